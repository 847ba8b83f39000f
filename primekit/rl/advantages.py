"""PRIME's per-token advantages: implicit process rewards plus outcome rewards, RLOO, returns.

All tensors are (B, T) over the *response* tokens, one row per sampled response, with a mask that
is 1 on the response's own tokens. Responses are right-padded (mask ``1 .. 1 0 .. 0``, TRL's
``completion_mask``); "the last token" of a response is the last position where its mask is 1, so
the functions also give the right answer for other padding, and a row whose mask is all 0 has no
last token. Rows come group by group: the ``group_size`` consecutive rows of a group are the n
responses sampled for one prompt.

The composition in :func:`prime_advantages` follows the official PRIME recipe for verl
(``compute_rloo_advantage_return``):

1. process stream: RLOO over the token rewards r_t = beta * q_t (see
   :func:`implicit_token_rewards`, :func:`normalize_token_rewards`), every response token masked in;
2. outcome stream: RLOO over the verifier's score placed on the last token;
3. per-token reward = process_coef * (1) + outcome_coef * (2); returns = reverse cumulative sum;
   advantages = the returns whitened over every valid token of the batch.

Keeping the streams apart until after RLOO matters: each is centred within its group by its own
leave-one-out baseline, so a prompt on which every response is right (or wrong) gets no outcome
signal while its process rewards still rank the responses.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "last_token_mask",
    "implicit_token_rewards",
    "normalize_token_rewards",
    "masked_rloo",
    "outcome_on_last_token",
    "returns_to_go",
    "masked_whiten",
    "prime_advantages",
]

#: Added to the batch-norm denominator (official value) so an all-zero batch does not divide by 0.
BATCH_NORM_EPS = 1e-6
#: Added to the variance before the square root in :func:`masked_whiten` (official value).
WHITEN_EPS = 1e-8


def _float_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.get_default_dtype()


def _check_2d_same_shape(values: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    if values.dim() != 2 or values.shape != mask.shape:
        raise ValueError(f"{what}: expected (B, T) values and mask of the same shape, "
                         f"got {tuple(values.shape)} and {tuple(mask.shape)}")


def _check_groups(num_rows: int, group_size: int, what: str) -> None:
    if group_size < 2:
        raise ValueError(f"{what}: a leave-one-out baseline needs group_size >= 2, got {group_size}")
    if num_rows % group_size != 0:
        raise ValueError(f"{what}: {num_rows} rows do not split into groups of {group_size}")


def last_token_mask(mask: torch.Tensor) -> torch.Tensor:
    """Bool (B, T): True only at each row's last valid token; all False for an empty row."""
    valid = mask.bool()
    positions = torch.arange(valid.shape[-1], device=valid.device).expand_as(valid)
    last = torch.where(valid, positions, -1).max(dim=-1, keepdim=True).values
    return (positions == last) & valid


def implicit_token_rewards(
    q: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    granularity: Literal["token", "whole"] = "token",
) -> torch.Tensor:
    """Dense (B, T) rewards from the PRM log-ratios q_t = log pi_phi - log pi_ref.

    - ``"token"``: r_t = beta * q_t on every valid token, the last one included (the PRIME
      repository's PRM worker gives each response token its own log-ratio:
      ``training/verl/workers/actor/dp_prime.py:126-141``, and its RLOO masks every response
      token in: ``core_algos.py:115-117``).
    - ``"whole"``: everything 0 except the last valid token, which gets the sequence reward
      beta * sum_t q_t, i.e. the implicit PRM used as an outcome reward model.

    Pass beta = 1 for the PRIME repository's variant, which leaves beta out and relies on
    :func:`normalize_token_rewards` for the scale. Padding positions are 0.
    """
    _check_2d_same_shape(q, mask, "implicit_token_rewards")
    valid = mask.bool()
    if granularity == "token":
        return torch.where(valid, beta * q, torch.zeros_like(q))
    if granularity == "whole":
        last = last_token_mask(valid)
        total = beta * q.masked_fill(~valid, 0).sum(dim=-1, keepdim=True)
        return torch.where(last, total, torch.zeros_like(q))
    raise ValueError(f"implicit_token_rewards: granularity must be 'token' or 'whole', got {granularity!r}")


def normalize_token_rewards(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    mode: Literal["batch_norm", "none"] = "batch_norm",
    row_groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The official ``prime_norm``: rescale token rewards so no return exceeds 1 in size.

    ``"batch_norm"`` divides every reward by (the largest |reverse cumulative sum| over the valid
    tokens of its scope) + 1e-6, i.e. by the largest return-to-go the process rewards alone can
    produce, which keeps the process stream on the scale of a 0/1 outcome whatever beta and the
    response length are. The scope is the whole batch, or, with ``row_groups`` (B,) integer
    labels, each set of rows sharing a label: the official run normalises inside each
    data-parallel worker over that worker's rows (``dp_prime.py:239-241``), which is
    ``row_groups`` = the process each row is trained on. ``"none"`` leaves the values as they are.
    Padding becomes 0 in both modes; zero the mask of rows that must not set the scale
    (filtered groups).
    """
    _check_2d_same_shape(rewards, mask, "normalize_token_rewards")
    masked = rewards.masked_fill(~mask.bool(), 0)
    if mode == "none":
        return masked
    if mode != "batch_norm":
        raise ValueError(f"normalize_token_rewards: mode must be 'batch_norm' or 'none', got {mode!r}")
    largest_return = masked.flip(dims=[-1]).cumsum(dim=-1).flip(dims=[-1]).abs().amax(dim=-1)
    if row_groups is None:
        return masked / (largest_return.max() + BATCH_NORM_EPS)
    if row_groups.shape != (rewards.shape[0],):
        raise ValueError(f"normalize_token_rewards: expected ({rewards.shape[0]},) row_groups, "
                         f"got {tuple(row_groups.shape)}")
    labels, group_of_row = torch.unique(row_groups, return_inverse=True)
    group_max = torch.zeros(len(labels), dtype=largest_return.dtype, device=largest_return.device)
    group_max = group_max.scatter_reduce(0, group_of_row, largest_return, reduce="amax")
    return masked / (group_max[group_of_row] + BATCH_NORM_EPS).unsqueeze(-1)


def masked_rloo(rewards: torch.Tensor, mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out centring of token rewards within each group of ``group_size`` rows.

    With m_i the mean of R_i over its mask and S the sum of m_j over i's group, every masked
    entry becomes R_it * n/(n-1) - S/(n-1), which rearranges to
    (R_it - mean_{j != i} m_j) + (R_it - m_i)/(n-1): the other responses' mean is the baseline.
    With one masked token per row (the outcome stream) the second term vanishes and this is
    exactly the RLOO advantage R_i - mean_{j != i} R_j. This is the official formula; unmasked
    entries are 0, and an empty row counts m_i = 0 towards its group's S.
    """
    _check_2d_same_shape(rewards, mask, "masked_rloo")
    _check_groups(rewards.shape[0], group_size, "masked_rloo")
    valid = mask.bool()
    n = group_size
    masked = rewards.masked_fill(~valid, 0)
    row_mean = masked.sum(dim=-1) / valid.sum(dim=-1).clamp(min=1)
    group_sum = row_mean.view(-1, n).sum(dim=-1).repeat_interleave(n)
    centred = masked * (n / (n - 1)) - (group_sum / (n - 1)).unsqueeze(-1)
    return centred.masked_fill(~valid, 0)


def outcome_on_last_token(scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Place each response's scalar score on its last valid token.

    Returns ``(rewards, reward_mask)``: rewards (B, T) holding score_i at the last token of row i
    and 0 elsewhere, and the bool mask of those positions -- the mask :func:`masked_rloo` needs so
    that the outcome baseline averages one number per response, not T.
    """
    if scores.dim() != 1 or scores.shape[0] != mask.shape[0]:
        raise ValueError(f"outcome_on_last_token: expected ({mask.shape[0]},) scores, got {tuple(scores.shape)}")
    last = last_token_mask(mask)
    values = scores.to(_float_dtype(scores)).unsqueeze(-1).expand(last.shape)
    return torch.where(last, values, torch.zeros_like(values)), last


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} over the valid tokens; 0 on padding.

    gamma is applied per position, so with gamma < 1 the valid tokens must be contiguous (right
    padding). PRIME uses gamma = 1, where G_t is the plain sum of the rewards from t to the end.
    """
    _check_2d_same_shape(rewards, mask, "returns_to_go")
    valid = mask.bool()
    masked = rewards.masked_fill(~valid, 0)
    if gamma == 1.0:
        returns = masked.flip(dims=[-1]).cumsum(dim=-1).flip(dims=[-1])
    else:
        returns = torch.zeros_like(masked)
        running = torch.zeros_like(masked[:, 0])
        for t in range(masked.shape[-1] - 1, -1, -1):
            running = masked[:, t] + gamma * running
            returns[:, t] = running
    return returns.masked_fill(~valid, 0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / sqrt(var + 1e-8) with mean and variance over the masked entries only.

    The variance is the unbiased (Bessel-corrected) one and the epsilon sits under the square root,
    as in verl's and TRL's PPO ``masked_whiten``, so the numbers match the official recipe.
    ``shift_mean=False`` adds the mean back (rescale only). Entries outside the mask are 0,
    so padding and zero-weight rows carry no advantage into the policy loss.
    """
    if values.shape != mask.shape:
        raise ValueError(f"masked_whiten: shapes differ, {tuple(values.shape)} vs {tuple(mask.shape)}")
    valid = mask.bool()
    count = int(valid.sum())
    if count < 2:
        raise ValueError(f"masked_whiten: need at least 2 masked entries for a variance, got {count}")
    selected = values[valid]
    mean = selected.mean()
    var = ((selected - mean) ** 2).sum() / (count - 1)
    whitened = (values - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return whitened.masked_fill(~valid, 0)


def prime_advantages(
    process_rewards: torch.Tensor,
    outcome_scores: torch.Tensor,
    mask: torch.Tensor,
    group_size: int,
    process_coef: float = 5.0,
    outcome_coef: float = 5.0,
    gamma: float = 1.0,
    valid_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PRIME advantages and returns, both (B, T).

    ``process_rewards`` are the (normalised) token rewards, ``outcome_scores`` the (B,) verifier
    scores (0/1 accuracy), ``mask`` the response mask. The process stream is RLOO over all valid
    tokens, the outcome stream RLOO over the score on the last token; they are summed with
    ``process_coef`` / ``outcome_coef`` (official 5 and 5), turned into returns-to-go, and the
    returns are whitened over the batch. ``process_coef=0`` is plain outcome-only RLOO.

    ``valid_rows`` (B,) bool marks the rows that are trained on. Rows outside it (groups the
    accuracy / truncation filter dropped but that stay in a fixed-shape batch) do not enter the
    whitening mean and variance, and get advantage 0 and return 0, so the batch behaves as if
    they had been removed. Filtering works on whole groups, so ``valid_rows`` must be constant
    within each group (their RLOO baselines never mix with other groups anyway). If no row is
    valid, all advantages are 0.
    """
    _check_2d_same_shape(process_rewards, mask, "prime_advantages")
    _check_groups(mask.shape[0], group_size, "prime_advantages")
    if process_coef == 0 and outcome_coef == 0:
        raise ValueError("prime_advantages: process_coef and outcome_coef are both 0, nothing to learn from")
    valid = mask.bool()
    rows = torch.ones(mask.shape[0], dtype=torch.bool, device=mask.device) if valid_rows is None else valid_rows.bool()
    if rows.shape != (mask.shape[0],):
        raise ValueError(f"prime_advantages: expected ({mask.shape[0]},) valid_rows, got {tuple(rows.shape)}")
    by_group = rows.view(-1, group_size)
    if not bool((by_group == by_group[:, :1]).all()):
        raise ValueError("prime_advantages: valid_rows must keep or drop whole groups")

    total = torch.zeros(mask.shape, dtype=_float_dtype(process_rewards), device=mask.device)
    if process_coef != 0:
        total = total + process_coef * masked_rloo(process_rewards, valid, group_size)
    if outcome_coef != 0:
        outcome, outcome_mask = outcome_on_last_token(outcome_scores.to(total.dtype), valid)
        total = total + outcome_coef * masked_rloo(outcome, outcome_mask, group_size)

    trained = valid & rows.unsqueeze(-1)
    returns = returns_to_go(total, valid, gamma).masked_fill(~trained, 0)
    if not bool(trained.any()):
        return torch.zeros_like(returns), returns
    return masked_whiten(returns, trained), returns
