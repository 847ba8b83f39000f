"""Training objectives for an implicit PRM, written on implicit sequence rewards.

An implicit PRM is a causal LM pi_phi read against a frozen reference pi_ref: the per-token
log-ratio q_t = log pi_phi(y_t|...) - log pi_ref(y_t|...) scaled by beta is a token reward, and the
sequence (outcome) reward is r(y) = beta * sum_t q_t. Training only ever sees r(y) with an outcome
label, which is what makes the process rewards "free". Every loss here takes r(y) already multiplied
by beta (see :func:`sequence_rewards`) and returns the mean over the batch.

The formulas follow the objectives TRL implements for policies (``DPOTrainer`` loss types
"sigmoid" and "nca_pair", ``KTOTrainer`` loss type "kto"); TRL writes them on ``beta * logratio``,
which is exactly r(y) here, so with equal inputs the values agree. They are restated as pure
functions because the PRM is trained on labelled samples, not on TRL's preference datasets, and
the online PRIME loop calls the CE loss inside its own step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from primekit.prm.reading import implicit_rewards

__all__ = [
    "sequence_rewards",
    "ce_loss",
    "dpo_loss",
    "nca_loss",
    "kto_loss",
    "kto_reference_point",
    "kl_pair_indices",
    "reward_accuracy",
    "pairwise_accuracy",
]


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def sequence_rewards(token_logratios: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """r(y) = beta * sum_t q_t over the valid response tokens; (B, T) -> (B,).

    ``mask`` marks the response tokens (1) against prompt/padding (0), so padding log-ratios,
    whatever garbage they hold, never reach the reward.
    """
    _check_same_shape(token_logratios, mask, "sequence_rewards")
    return implicit_rewards((token_logratios * mask.to(token_logratios.dtype)).sum(dim=-1), beta)


def ce_loss(rewards: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on sigma(r(y)): -[l log sigma(r) + (1 - l) log(1 - sigma(r))], batch mean.

    The PRIME paper's default objective (offline EurusPRM and the online PRM update). Computed
    from the logit r directly (BCE-with-logits) rather than from sigma(r), so a large |r| gives a
    finite loss and gradient instead of log(0). ``labels`` are outcome labels in [0, 1].
    """
    _check_same_shape(rewards, labels, "ce_loss")
    return F.binary_cross_entropy_with_logits(rewards, labels.to(rewards.dtype))


def dpo_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """DPO on a (correct, incorrect) pair: -log sigma(r(y_w) - r(y_l)), batch mean.

    Same value as TRL's DPO "sigmoid" loss with beta * logratios = the rewards here. It only
    constrains the difference of the two rewards, so the absolute level of r(y) is free.
    """
    _check_same_shape(chosen_rewards, rejected_rewards, "dpo_loss")
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def nca_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """NCA on a pair: -log sigma(r_w) - 0.5 log sigma(-r_w) - 0.5 log sigma(-r_l), batch mean.

    Unlike DPO it anchors the absolute rewards (TRL's "nca_pair"), pushing r(y_w) up and r(y_l)
    down rather than only apart.
    """
    _check_same_shape(chosen_rewards, rejected_rewards, "nca_loss")
    per_pair = (
        -F.logsigmoid(chosen_rewards)
        - 0.5 * F.logsigmoid(-chosen_rewards)
        - 0.5 * F.logsigmoid(-rejected_rewards)
    )
    return per_pair.mean()


def kto_reference_point(
    mismatched_policy_logps: torch.Tensor, mismatched_ref_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """KTO's reference point z0 in reward units: beta * max(0, mean(log pi - log pi_ref)), detached.

    The KL(pi || pi_ref) term is estimated, as in TRL's ``KTOTrainer``, from *mismatched* pairs:
    the sequence log-probabilities (sums over completion tokens) of completion y_j scored after
    prompt x_i with j != i (see :func:`kl_pair_indices`). Averaging over the batch, clamping at 0
    and detaching makes z0 a baseline that carries no gradient. With several processes TRL
    averages the per-process means before clamping; pass the gathered log-probs to match it.
    Returned multiplied by beta because :func:`kto_loss` compares it with rewards that are.
    """
    _check_same_shape(mismatched_policy_logps, mismatched_ref_logps, "kto_reference_point")
    if mismatched_policy_logps.numel() == 0:
        raise ValueError("kto_reference_point: no mismatched pairs to estimate the KL from")
    kl = (mismatched_policy_logps - mismatched_ref_logps).mean().detach().clamp(min=0)
    return beta * kl


def kl_pair_indices(batch_size: int) -> torch.Tensor:
    """Which completion to pair with each prompt for the KTO KL estimate.

    TRL shifts completions by one within the batch (prompt i gets completion i - 1, prompt 0
    gets the last one), so every pair is mismatched while the set of completions is the same as
    in the matched batch. A batch of one has no mismatched pair (TRL refuses it too).
    """
    if batch_size < 2:
        raise ValueError(f"kl_pair_indices: need a batch of at least 2, got {batch_size}")
    return torch.roll(torch.arange(batch_size), shifts=1)


def kto_loss(
    rewards: torch.Tensor,
    labels: torch.Tensor,
    reference_point: torch.Tensor | float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """Unpaired KTO: desirable 1 - sigma(r - z0), undesirable 1 - sigma(z0 - r), weighted mean.

    ``labels`` are booleans (or 0/1): True for a desirable (correct) response. ``reference_point``
    is z0 in reward units (from :func:`kto_reference_point`); it is detached and clamped at 0 here
    as well, so a caller cannot leak gradient through it. Like TRL, each loss is multiplied by its
    class weight and the result is the plain mean over all examples (the weights are not
    renormalised); use the weights to balance unequal numbers of correct and incorrect samples.
    """
    _check_same_shape(rewards, labels, "kto_loss")
    z0 = torch.as_tensor(reference_point, dtype=rewards.dtype, device=rewards.device).detach().clamp(min=0)
    desirable = labels.bool()
    per_example = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(rewards - z0)),
        undesirable_weight * (1 - torch.sigmoid(z0 - rewards)),
    )
    return per_example.mean()


def reward_accuracy(rewards: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of responses whose reward sign matches the outcome label.

    A reward predicts "correct" when sigma(r) > 0.5, i.e. r > 0; r == 0 counts as predicting
    "incorrect". This is the classification accuracy of the CE objective.
    """
    _check_same_shape(rewards, labels, "reward_accuracy")
    predicted = rewards > 0
    return (predicted == labels.bool()).to(rewards.dtype).mean()


def pairwise_accuracy(
    rewards: torch.Tensor, labels: torch.Tensor, group_size: int | None = None
) -> torch.Tensor:
    """How often the reward orders two responses to the same prompt like their labels do.

    Over every pair (i, j) inside a group of ``group_size`` consecutive rows (the whole batch when
    None) whose labels differ, the pair counts |l_i - l_j| if the rewards order it the same way,
    half of that on a reward tie, and 0 otherwise; the result is the total over the batch divided
    by the total |l_i - l_j|. This is the PRIME recipe's "dpo accuracy" pooled over the batch:
    the recipe averages per group and scores a group without mixed labels as 0.5, which dilutes
    the signal with groups that say nothing; here such a batch returns NaN.
    """
    _check_same_shape(rewards, labels, "pairwise_accuracy")
    if rewards.dim() != 1:
        raise ValueError(f"pairwise_accuracy: expected 1-D rewards, got shape {tuple(rewards.shape)}")
    size = rewards.numel() if group_size is None else group_size
    if size < 1 or rewards.numel() % size != 0:
        raise ValueError(f"pairwise_accuracy: {rewards.numel()} rows do not split into groups of {size}")
    reward_rows = rewards.reshape(-1, size)
    label_rows = labels.to(rewards.dtype).reshape(-1, size)
    reward_diff = reward_rows.unsqueeze(2) - reward_rows.unsqueeze(1)  # [g, i, j] = r_i - r_j
    label_diff = label_rows.unsqueeze(2) - label_rows.unsqueeze(1)
    upper = torch.triu(torch.ones(size, size, dtype=torch.bool, device=rewards.device), diagonal=1)
    agreement = (torch.sign(reward_diff) * torch.sign(label_diff) + 1) / 2  # 1 agree, 0.5 tie, 0 disagree
    weight = label_diff.abs() * upper
    return (agreement * weight).sum() / weight.sum()
