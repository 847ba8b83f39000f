"""Where a policy-gradient update lands: credit assignment of RLOO and PRIME, measured.

A batch of sampled responses whose erroneous step is known (the toy's slips, ProcessBench's
human-labelled first errors) says where an advantage scheme *should* push: down on the erroneous
step, nowhere in particular on the steps before it. For the policy loss -A_t log p_t the gradient
with respect to token t's logits is -A_t (e_{y_t} - pi_t), so

* ``|A_t| (1 - p_t)`` is how hard the update moves the sampled token's own logit (the *update
  weight*; counted on tokens with A_t < 0, the negative update), and
* ``|A_t| ||e_{y_t} - pi_t||`` with ``||e_{y_t} - pi_t||^2 = 1 - 2 p_t + sum_v pi_v^2`` is the
  norm of that token's logit gradient.

Tokens are sorted into *regions* by the response's labelled first error: responses without an
error, and before / on / after the erroneous step of the others (responses known to be wrong
whose step is unknown, e.g. an unparseable toy response, form their own region). The shares of
the negative weight per region, the share on *correct uncertain tokens* (tokens known to be
right, i.e. in error-free responses or before the first error, with p_t below a threshold), and
how often a response's largest weight falls on its erroneous step, say where an update lands.
:func:`perfect_prm_q` gives the ceiling: a PRM that puts ``-penalty`` on the labelled step and
nothing elsewhere, composed like any other PRM. :func:`logit_cosine` compares two schemes'
gradients in logit space (exact, no backward pass); :func:`bootstrap_snr` reads a gradient's
signal-to-noise ratio over bootstrap mini-batches of groups from the Gram matrix of per-group
parameter gradients.

PRIME's advantages are composed only with :mod:`primekit.rl.advantages` (:func:`scheme_advantages`).
Everything here is a pure function of (B, T) tensors over the response tokens, rows grouped as in
:mod:`primekit.rl.advantages`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from primekit.rl.advantages import implicit_token_rewards, normalize_token_rewards, prime_advantages

__all__ = [
    "NO_ERROR_LABEL", "UNKNOWN_ERROR_LABEL", "REGIONS", "SchemeCredit", "bootstrap_snr", "error_step_hits",
    "expected_snr", "gradient_norm_weights", "logit_cosine", "logit_gradient_sq_norms", "negative_update_weights",
    "perfect_prm_q", "region_shares", "scheme_advantages", "scheme_credit", "token_regions", "uncertain_share",
]

#: ``error_steps`` labels besides a step index: no erroneous step, and wrong at an unknown step.
NO_ERROR_LABEL, UNKNOWN_ERROR_LABEL = -1, -2
#: Token regions, in the order of :func:`region_shares`' result.
REGIONS = ("no-error responses", "before the error", "erroneous step", "after the error", "error step unknown")
NO_ERROR, BEFORE, ERROR, AFTER, UNKNOWN = range(len(REGIONS))
_OUTSIDE = -1  # padding


def _check(values: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    if values.dim() != 2 or values.shape != mask.shape:
        raise ValueError(f"{what}: expected (B, T) values and mask of the same shape, "
                         f"got {tuple(values.shape)} and {tuple(mask.shape)}")


def token_regions(token_steps: torch.Tensor, error_steps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) region index of each response token (see :data:`REGIONS`), -1 on padding.

    ``token_steps`` (B, T) is each token's step index; ``error_steps`` (B,) the first erroneous
    step of each response, :data:`NO_ERROR_LABEL` or :data:`UNKNOWN_ERROR_LABEL`."""
    _check(token_steps, mask, "token_regions")
    if error_steps.shape != (mask.shape[0],) or bool((error_steps < UNKNOWN_ERROR_LABEL).any()):
        raise ValueError(f"token_regions: expected ({mask.shape[0]},) error steps >= {UNKNOWN_ERROR_LABEL}, "
                         f"got shape {tuple(error_steps.shape)}")
    error = error_steps.to(token_steps.device).unsqueeze(-1)
    regions = torch.full_like(token_steps, NO_ERROR)
    labelled = error >= 0
    regions = torch.where(labelled & (token_steps < error), BEFORE, regions)
    regions = torch.where(labelled & (token_steps == error), ERROR, regions)
    regions = torch.where(labelled & (token_steps > error), AFTER, regions)
    regions = torch.where((error == UNKNOWN_ERROR_LABEL).expand_as(regions), UNKNOWN, regions)
    return torch.where(mask.bool(), regions, _OUTSIDE)


def perfect_prm_q(token_steps: torch.Tensor, error_steps: torch.Tensor, mask: torch.Tensor,
                  penalty: float = 3.0) -> torch.Tensor:
    """The log-ratios of a perfect PRM: the labelled erroneous step's tokens share ``-penalty``
    (so the step's reward is -penalty), every other token 0. A response without a labelled step
    gets 0 everywhere."""
    if penalty <= 0:
        raise ValueError(f"perfect_prm_q: penalty must be positive, got {penalty}")
    on_error = token_regions(token_steps, error_steps, mask) == ERROR
    count = on_error.sum(dim=-1, keepdim=True).clamp(min=1)
    return torch.where(on_error, -penalty / count, 0.0).to(torch.get_default_dtype())


def scheme_advantages(q: torch.Tensor | None, outcomes: torch.Tensor, mask: torch.Tensor, group_size: int,
                      valid_rows: torch.Tensor, *, process_coef: float = 5.0, outcome_coef: float = 5.0,
                      beta: float = 1.0, prime_norm: str = "batch_norm") -> torch.Tensor:
    """Per-token advantages as the PRIME trainer composes them: token rewards beta * q on the
    trained rows, batch-max normalised, then RLOO of both streams, returns-to-go and whitening
    (:func:`primekit.rl.advantages.prime_advantages`). ``q=None`` is outcome-only RLOO."""
    trained = mask.bool() & valid_rows.bool().unsqueeze(-1)
    if q is None:
        process, process_coef = torch.zeros(mask.shape, dtype=torch.get_default_dtype()), 0.0
    else:
        _check(q, mask, "scheme_advantages")
        process = normalize_token_rewards(implicit_token_rewards(q, trained, beta), trained, prime_norm)
    advantages, _ = prime_advantages(process, outcomes, mask, group_size, process_coef=process_coef,
                                     outcome_coef=outcome_coef, valid_rows=valid_rows)
    return advantages


def negative_update_weights(advantages: torch.Tensor, token_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """|A_t| (1 - p_t) where A_t < 0, else 0: how hard the update lowers each sampled token."""
    _check(advantages, mask, "negative_update_weights")
    pushed_down = mask.bool() & (advantages < 0)
    return torch.where(pushed_down, -advantages * (1 - token_probs), 0.0)


def logit_gradient_sq_norms(token_probs: torch.Tensor, sum_sq_probs: torch.Tensor) -> torch.Tensor:
    """||e_y - pi||^2 = 1 - 2 p_y + sum_v pi_v^2, the squared logit gradient of -log p_y."""
    return (1 - 2 * token_probs + sum_sq_probs).clamp(min=0)


def gradient_norm_weights(advantages: torch.Tensor, token_probs: torch.Tensor, sum_sq_probs: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
    """|A_t| ||e_y - pi_t|| where A_t < 0, else 0: the norm of each token's logit gradient."""
    _check(advantages, mask, "gradient_norm_weights")
    pushed_down = mask.bool() & (advantages < 0)
    return torch.where(pushed_down, -advantages * logit_gradient_sq_norms(token_probs, sum_sq_probs).sqrt(), 0.0)


def region_shares(weights: torch.Tensor, regions: torch.Tensor) -> list[float]:
    """Share of the total weight in each region of :data:`REGIONS` (NaN when the total is 0)."""
    total = float(weights[regions >= 0].sum())
    return [float(weights[regions == index].sum()) / total if total > 0 else float("nan")
            for index in range(len(REGIONS))]


def uncertain_share(weights: torch.Tensor, regions: torch.Tensor, token_probs: torch.Tensor,
                    threshold: float = 0.9) -> float:
    """Share of the total weight on tokens known to be right (error-free responses, and before
    the first error) that the policy found uncertain (p_t < ``threshold``)."""
    total = float(weights[regions >= 0].sum())
    right = (regions == NO_ERROR) | (regions == BEFORE)
    return float(weights[right & (token_probs < threshold)].sum()) / total if total > 0 else float("nan")


def error_step_hits(weights: torch.Tensor, regions: torch.Tensor) -> tuple[int, int]:
    """(responses whose largest weight lies on their erroneous step, responses with a labelled
    erroneous step and some weight); the first token wins a tie."""
    labelled = (regions == ERROR).any(dim=-1) & (weights > 0).any(dim=-1)
    top = weights.masked_fill(regions < 0, -1.0).argmax(dim=-1)
    hit = regions.gather(1, top.unsqueeze(-1)).squeeze(-1) == ERROR
    return int((hit & labelled).sum()), int(labelled.sum())


def logit_cosine(first: torch.Tensor, second: torch.Tensor, sq_norms: torch.Tensor, mask: torch.Tensor) -> float:
    """Cosine of two schemes' policy gradients with respect to every logit of the batch.

    Token t contributes -A_t (e_y - pi_t) to both, so the inner product is
    sum_t A_t B_t ||e_y - pi_t||^2 and the cosine is a weighted cosine of the advantages."""
    _check(first, mask, "logit_cosine")
    valid = mask.bool()
    a, b, w = first[valid].double(), second[valid].double(), sq_norms[valid].double()
    denominator = float(((a * a * w).sum() * (b * b * w).sum()).sqrt())
    return float((a * b * w).sum()) / denominator if denominator > 0 else float("nan")


def _check_gram(gram: torch.Tensor) -> None:
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] < 2:
        raise ValueError(f"expected a square Gram matrix of at least 2 groups, got {tuple(gram.shape)}")


def expected_snr(gram: torch.Tensor, mini_batch: int) -> float:
    """||g||^2 / E||g_b - g||^2 for mini-batches g_b, the mean of ``mini_batch`` groups drawn with
    replacement, and g the mean of all groups, from the Gram matrix of per-group gradients: the
    noise is the per-group variance trace (1/G normalisation) over ``mini_batch``."""
    _check_gram(gram)
    gram = gram.double()
    groups = gram.shape[0]
    mean_sq = float(gram.sum()) / groups ** 2
    variance = float(torch.diagonal(gram).sum()) / groups - mean_sq
    return _ratio(mean_sq, variance / mini_batch)


def bootstrap_snr(gram: torch.Tensor, mini_batch: int, resamples: int = 2000, seed: int = 0) -> float:
    """Gradient signal-to-noise over bootstrap mini-batches: draw ``resamples`` mini-batches of
    ``mini_batch`` groups with replacement, each's gradient the mean of its groups'; return
    ||mean of the mini-batch gradients||^2 / mean ||mini-batch gradient - that mean||^2.

    Every quantity is a quadratic form in the per-group gradients, so only their Gram matrix
    (G x G inner products) is needed, whatever the number of parameters."""
    _check_gram(gram)
    if mini_batch < 1 or resamples < 2:
        raise ValueError(f"bootstrap_snr: need mini_batch >= 1 and resamples >= 2, got {mini_batch}, {resamples}")
    gram = gram.double()
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randint(gram.shape[0], (resamples, mini_batch), generator=generator)
    weights = torch.zeros(resamples, gram.shape[0], dtype=torch.float64)
    weights.scatter_add_(1, drawn, torch.full(drawn.shape, 1.0 / mini_batch, dtype=torch.float64))
    centre = weights.mean(dim=0)
    signal = float(centre @ gram @ centre)
    deviations = weights - centre
    noise = float(((deviations @ gram) * deviations).sum(dim=-1).mean())
    return _ratio(signal, noise)


def _ratio(signal: float, noise: float) -> float:
    """signal / noise; noise within rounding of 0 is none (inf), and nothing at all is NaN."""
    if noise > 1e-12 * abs(signal):
        return signal / noise
    return float("inf") if signal > 0 else float("nan")


@dataclass(frozen=True)
class SchemeCredit:
    """Where one scheme's negative update lands on a batch (see the module docstring)."""

    scheme: str
    weight_shares: tuple[float, ...]  # |A|(1-p) by REGIONS
    gradient_shares: tuple[float, ...]  # |A| ||e-pi|| by REGIONS
    uncertain_weight_share: float
    uncertain_gradient_share: float
    error_step_hits: int
    labelled_responses: int
    logit_cosine_with_perfect: float
    parameter_cosine_with_perfect: float | None = None
    gradient_snr: float | None = None

    @property
    def hit_rate(self) -> float:
        return self.error_step_hits / self.labelled_responses if self.labelled_responses else float("nan")


def scheme_credit(scheme: str, advantages: torch.Tensor, perfect: torch.Tensor, token_probs: torch.Tensor,
                  sum_sq_probs: torch.Tensor, regions: torch.Tensor, mask: torch.Tensor,
                  uncertain_below: float = 0.9) -> SchemeCredit:
    """Every logit-space read-out of one scheme's advantages (``perfect``: the perfect PRM's)."""
    weights = negative_update_weights(advantages, token_probs, mask)
    norms = gradient_norm_weights(advantages, token_probs, sum_sq_probs, mask)
    hits, labelled = error_step_hits(weights, regions)
    return SchemeCredit(
        scheme, tuple(region_shares(weights, regions)), tuple(region_shares(norms, regions)),
        uncertain_share(weights, regions, token_probs, uncertain_below),
        uncertain_share(norms, regions, token_probs, uncertain_below), hits, labelled,
        logit_cosine(advantages, perfect, logit_gradient_sq_norms(token_probs, sum_sq_probs), mask))
