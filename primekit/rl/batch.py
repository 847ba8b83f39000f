"""Regrouping TRL's generation batch for PRIME: which process trains on which kept row, padding
trims, and truncation flags. Pure tensor functions, so the distributed bookkeeping is testable
without launching processes.

TRL hands every process its own slice of the generation batch, padded to that slice's longest
prompt (on the left) and completion (on the right). PRIME filters whole groups on the global
batch, so the kept rows are gathered and redistributed: each process gets the same number of rows,
and mini-batch i of the PRM update is the same set of rows whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["row_assignment", "rank_of_rows", "truncated_rows", "trim_columns", "concat_rows", "PROMPT_KEYS"]

#: Batch fields aligned with the (left-padded) prompt; every other row field follows the completion.
PROMPT_KEYS = ("prompt_ids", "prompt_mask")


def row_assignment(num_rows: int, mini_batch_size: int, num_processes: int) -> torch.Tensor:
    """(num_processes, num_rows // num_processes) indices: the kept rows each process trains on.

    Rows are cut into mini-batches of ``mini_batch_size`` and every mini-batch is split evenly
    over the processes, so process p's k-th local mini-batch is rows
    [i*M + p*m, i*M + (p+1)*m) of the global one (M the mini-batch, m = M / P). E.g. 8 rows,
    mini-batches of 4, 2 processes: process 0 gets [0, 1, 4, 5] and process 1 gets [2, 3, 6, 7].
    """
    if mini_batch_size < 1 or num_rows % mini_batch_size or mini_batch_size % num_processes:
        raise ValueError(f"row_assignment: {num_rows} rows in mini-batches of {mini_batch_size} do not split "
                         f"evenly over {num_processes} processes")
    per_process = mini_batch_size // num_processes
    grid = torch.arange(num_rows).view(num_rows // mini_batch_size, num_processes, per_process)
    return grid.permute(1, 0, 2).reshape(num_processes, -1)


def rank_of_rows(assignment: torch.Tensor) -> torch.Tensor:
    """(num_rows,) the process each row is assigned to by :func:`row_assignment`."""
    ranks = torch.empty(assignment.numel(), dtype=torch.long)
    for rank, rows in enumerate(assignment):
        ranks[rows] = rank
    return ranks


def truncated_rows(completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                   eos_token_ids: Iterable[int]) -> torch.Tensor:
    """(B,) bool: True where a response's last valid token is not an end-of-sequence token, i.e.
    generation stopped at the length limit. An empty response (mask all 0) counts as truncated."""
    valid = completion_mask.bool()
    positions = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    last = torch.where(valid, positions, -1).max(dim=1).values
    last_token = completion_ids.gather(1, last.clamp(min=0).unsqueeze(1)).squeeze(1)
    eos = torch.tensor(sorted(set(eos_token_ids)), device=completion_ids.device)
    return (last < 0) | ~torch.isin(last_token, eos)


def trim_columns(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the leading prompt columns and trailing completion columns that are padding in every
    row, which is how TRL would have padded these rows had they been generated together."""
    prompt_keep = int(batch["prompt_mask"].bool().any(dim=0).int().argmax()) if batch["prompt_mask"].numel() else 0
    completion_width = batch["completion_mask"].shape[1]
    used = batch["completion_mask"].bool().any(dim=0).nonzero()
    completion_keep = int(used.max()) + 1 if used.numel() else 1
    trimmed = {}
    for key, value in batch.items():
        if key in PROMPT_KEYS:
            trimmed[key] = value[:, prompt_keep:]
        elif value.dim() == 2 and value.shape[1] == completion_width:
            trimmed[key] = value[:, :completion_keep]
        else:
            trimmed[key] = value
    return trimmed


def concat_rows(batches: list[dict[str, torch.Tensor]], pad_values: dict[str, int]) -> dict[str, torch.Tensor]:
    """Stack the rows of several batches with the same fields, padding each field to the widest:
    prompt fields on the left (TRL left-pads prompts), every other 2-D field on the right.
    ``pad_values`` gives the fill of a field (token-id fields use the pad token); 0 otherwise."""
    if not batches:
        raise ValueError("concat_rows: no batches")
    merged = {}
    for key in batches[0]:
        values = [batch[key] for batch in batches]
        if values[0].dim() >= 2:
            width = max(value.shape[1] for value in values)
            fill = pad_values.get(key, 0)
            values = [_pad_dim1(value, width, fill, left=key in PROMPT_KEYS) for value in values]
        merged[key] = torch.cat(values, dim=0)
    return merged


def _pad_dim1(value: torch.Tensor, width: int, fill: int, left: bool) -> torch.Tensor:
    missing = width - value.shape[1]
    if missing == 0:
        return value
    padding = value.new_full((value.shape[0], missing, *value.shape[2:]), fill)
    return torch.cat([padding, value] if left else [value, padding], dim=1)
