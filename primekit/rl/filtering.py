"""Which prompts of an oversampled batch PRIME trains on.

Each prompt contributes a group of ``group_size`` consecutive responses. A group whose responses
are all right or all wrong gives the outcome stream no signal, so the Eurus-2-7B-PRIME run keeps only
prompts whose group accuracy lies in a band ([0.2, 0.8], inclusive; run_prime_main.sh:48-50).
Dropping groups that hold a truncated response is an option of the same code (data.filter_truncated)
that this run leaves off (ppo_trainer.yaml:14). PRIME samples ``oversample_factor`` times more prompts
than it trains on and keeps the needed number, preferring groups that pass.

Everything here is a pure function of per-response accuracies and truncation flags and returns
masks / indices; the trainer decides how to apply them (gather rows, or zero their weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "group_accuracy",
    "accuracy_band_mask",
    "filter_truncated",
    "select_groups",
    "FilterStats",
    "GroupSelection",
    "filter_groups",
]

#: Slack on the band edges, so that e.g. 2 of 10 correct counts as exactly 0.2.
_BAND_TOLERANCE = 1e-9


def _by_group(values: torch.Tensor, group_size: int, what: str) -> torch.Tensor:
    if values.dim() != 1:
        raise ValueError(f"{what}: expected one value per response, got shape {tuple(values.shape)}")
    if group_size < 1 or values.numel() % group_size != 0:
        raise ValueError(f"{what}: {values.numel()} responses do not split into groups of {group_size}")
    return values.view(-1, group_size)


def group_accuracy(acc: torch.Tensor, group_size: int) -> torch.Tensor:
    """Mean accuracy of each group of ``group_size`` consecutive responses, (G,) float64.

    float64 so that k correct of n compares exactly with band edges written as decimals.
    """
    return _by_group(acc, group_size, "group_accuracy").to(torch.float64).mean(dim=-1)


def accuracy_band_mask(acc: torch.Tensor, group_size: int, low: float = 0.2, high: float = 0.8) -> torch.Tensor:
    """(G,) bool: True where low <= group accuracy <= high (both edges included)."""
    if low > high:
        raise ValueError(f"accuracy_band_mask: low {low} is above high {high}")
    accuracy = group_accuracy(acc, group_size)
    return (accuracy >= low - _BAND_TOLERANCE) & (accuracy <= high + _BAND_TOLERANCE)


def filter_truncated(truncated: torch.Tensor, group_size: int) -> torch.Tensor:
    """(G,) bool: True for the groups to keep, i.e. where no response was truncated.

    A response is truncated when generation hit the length limit before its end-of-sequence
    token; its verdict is then about an unfinished answer. Filtering works on whole groups (the
    leave-one-out baseline needs all n responses of a prompt), so, as in the official code's
    ``filter_truncated`` option (off in the Eurus-2-7B-PRIME run), one truncated response drops its
    whole group.
    """
    return ~_by_group(truncated.bool(), group_size, "filter_truncated").any(dim=-1)


def select_groups(
    passing: torch.Tensor, n_keep: int, train_on_failing: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep ``n_keep`` of the groups, passing ones first: returns (group indices, weights).

    The order is deterministic: the passing groups in their original order, then the failing
    ones in theirs, cut at ``n_keep``. When fewer than ``n_keep`` pass, the batch is filled up
    with failing groups so that its shape stays fixed; their weight is 0 (they must not be
    trained on) unless ``train_on_failing``, where the filled-in groups are trained on like the
    others (verl's later ``filter_and_downsample``; the Eurus-2-7B-PRIME run samples again instead
    and never trains on a failing group). Weights of passing groups are 1.
    """
    if passing.dim() != 1:
        raise ValueError(f"select_groups: expected one flag per group, got shape {tuple(passing.shape)}")
    if not 1 <= n_keep <= passing.numel():
        raise ValueError(f"select_groups: cannot keep {n_keep} of {passing.numel()} groups")
    order = torch.argsort(passing.to(torch.int8), descending=True, stable=True)
    kept = order[:n_keep]
    weights = torch.ones(n_keep, device=passing.device) if train_on_failing else passing[kept].to(torch.get_default_dtype())
    return kept, weights


@dataclass(frozen=True)
class FilterStats:
    """Counts of one filtering step, for logging (fractions via :meth:`as_metrics`)."""

    num_groups: int
    num_outside_band: int
    num_truncated: int
    num_passing: int
    num_kept: int
    num_kept_failing: int

    def as_metrics(self, prefix: str = "filter/") -> dict[str, float]:
        """Fractions of the sampled groups (and of the kept ones for ``kept_failing``)."""
        return {
            f"{prefix}outside_band": self.num_outside_band / self.num_groups,
            f"{prefix}truncated": self.num_truncated / self.num_groups,
            f"{prefix}passing": self.num_passing / self.num_groups,
            f"{prefix}kept_failing": self.num_kept_failing / self.num_kept,
        }


@dataclass(frozen=True)
class GroupSelection:
    """The groups kept from an oversampled batch, with their loss weights and counts.

    ``group_indices`` / ``group_weights`` have one entry per kept group; the ``row_*`` properties
    expand them to the ``group_size`` consecutive responses of each group.
    """

    group_indices: torch.Tensor
    group_weights: torch.Tensor
    group_size: int
    stats: FilterStats
    #: (G,) bool over every sampled group: True where it passed the filter
    passing: torch.Tensor | None = None

    @property
    def surplus_passing(self) -> torch.Tensor:
        """Indices of the groups that passed but were not kept (more passed than are trained on), in order."""
        if self.passing is None:
            return torch.zeros(0, dtype=torch.long)
        unkept = self.passing.clone()
        unkept[self.group_indices] = False
        return torch.nonzero(unkept).flatten()

    @property
    def row_indices(self) -> torch.Tensor:
        offsets = torch.arange(self.group_size, device=self.group_indices.device)
        return (self.group_indices.unsqueeze(-1) * self.group_size + offsets).reshape(-1)

    @property
    def row_weights(self) -> torch.Tensor:
        return self.group_weights.repeat_interleave(self.group_size)


def filter_groups(
    acc: torch.Tensor,
    group_size: int,
    n_keep: int,
    truncated: torch.Tensor | None = None,
    low: float = 0.2,
    high: float = 0.8,
    filter_accuracy: bool = True,
    train_on_failing: bool = False,
) -> GroupSelection:
    """The whole filtering step: accuracy band, truncation (when ``truncated`` is given), selection.

    ``acc`` and ``truncated`` hold one value per response, grouped by prompt. With
    ``filter_accuracy=False`` and no ``truncated`` every group passes and the first ``n_keep`` are
    kept, which is plain downsampling.
    """
    num_groups = _by_group(acc, group_size, "filter_groups").shape[0]
    every_group = torch.ones(num_groups, dtype=torch.bool, device=acc.device)
    in_band = accuracy_band_mask(acc, group_size, low, high) if filter_accuracy else every_group
    complete = filter_truncated(truncated, group_size) if truncated is not None else every_group
    if complete.shape != in_band.shape:
        raise ValueError(f"filter_groups: {acc.numel()} accuracies but {truncated.numel()} truncation flags")
    passing = in_band & complete
    indices, weights = select_groups(passing, n_keep, train_on_failing)
    stats = FilterStats(
        num_groups=num_groups,
        num_outside_band=int((~in_band).sum()),
        num_truncated=int((~complete).sum()),
        num_passing=int(passing.sum()),
        num_kept=n_keep,
        num_kept_failing=int((~passing[indices]).sum()),
    )
    return GroupSelection(indices, weights, group_size, stats, passing)
