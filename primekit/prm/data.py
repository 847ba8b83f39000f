"""Training data for an implicit PRM: the two file formats, their tokenization, and the collator.

Two JSONL formats, chosen by the loss:

* outcome-labelled samples, one response per line: ``{"prompt", "completion", "label"}`` with
  ``label`` 0 or 1 (CE and KTO losses; what EurusPRM Stage 1 trains on);
* pairs: ``{"prompt", "chosen", "rejected"}``, a correct and an incorrect response to one prompt
  (DPO and NCA losses).

A prompt is either text used verbatim (already rendered, as the generators produce it) or a list of
chat messages, rendered with the tokenizer's chat template. Prompt and completion are tokenized
*separately* and concatenated, exactly as a sampled completion follows its prompt's tokens, and the
same function serves training and scoring (:mod:`primekit.prm.implicit`), so a PRM is read on the
token sequences it was trained on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from trl.trainer.utils import pad

from primekit.errors import InputError
from primekit.io import iter_jsonl, read_json_or_jsonl, require_field
from primekit.prm.losses import kl_pair_indices
from primekit.prm.reading import Prompt, render_prompt

logger = logging.getLogger(__name__)

OUTCOME_FIELDS = ("prompt", "completion", "label")
PAIR_FIELDS = ("prompt", "chosen", "rejected")


def check_prompt(value: Any, *, path: str, line: int) -> None:
    """A prompt is non-empty text or a non-empty list of ``{role, content}`` chat messages."""
    if isinstance(value, str):
        if not value:
            raise InputError("empty prompt", path=path, line=line, field="prompt")
        return
    is_messages = isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value)
    if not is_messages:
        raise InputError("expected a string or a list of {role, content} messages",
                         path=path, line=line, field="prompt")


def _check_text(record: dict, field: str, *, path: str, line: int) -> str:
    text = require_field(record, field, path=path, line=line, kind=str)
    if not text.strip():
        raise InputError("empty response", path=path, line=line, field=field)
    return text


def _check_label(record: dict, *, path: str, line: int) -> int:
    label = require_field(record, "label", path=path, line=line)
    # bool is an int subclass: true/false are accepted as 1/0; 0.5, "1", 2 are not.
    if isinstance(label, (bool, int)) and int(label) in (0, 1):
        return int(label)
    if isinstance(label, float) and label in (0.0, 1.0):
        return int(label)
    raise InputError(f"expected 0 or 1, got {label!r}", path=path, line=line, field="label")


def read_outcome_samples(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Validated ``{prompt, completion, label}`` records; any bad line is an :class:`InputError`
    naming file, line and field (malformed JSON, missing field, empty completion, label not 0/1)."""
    records = []
    for line, record in iter_jsonl(path):
        check_prompt(require_field(record, "prompt", path=path, line=line), path=str(path), line=line)
        records.append({"prompt": record["prompt"],
                        "completion": _check_text(record, "completion", path=str(path), line=line),
                        "label": _check_label(record, path=str(path), line=line)})
    if not records:
        raise InputError("no samples in the file", path=path)
    return records


def read_pairs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Validated ``{prompt, chosen, rejected}`` records (errors as in :func:`read_outcome_samples`)."""
    records = []
    for line, record in iter_jsonl(path):
        check_prompt(require_field(record, "prompt", path=path, line=line), path=str(path), line=line)
        records.append({"prompt": record["prompt"],
                        "chosen": _check_text(record, "chosen", path=str(path), line=line),
                        "rejected": _check_text(record, "rejected", path=str(path), line=line)})
    if not records:
        raise InputError("no pairs in the file", path=path)
    return records


def iter_data_rows(path: str | os.PathLike) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(where, row)`` for each row of a ``.jsonl``, ``.json`` (a list of objects) or ``.parquet``
    file; ``where`` holds the ``path`` and ``line`` an error should name (for a JSON list or a
    parquet file: ``file[row index]``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    if path.suffix == ".parquet":

        try:
            table = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises several types for a file that is not parquet
            raise InputError(f"cannot read as parquet ({str(err).splitlines()[0]})", path=path) from None
        index = 0
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield {"path": f"{path}[{index}]", "line": None}, row
                index += 1
    elif path.suffix == ".json":
        for index, row in enumerate(read_json_or_jsonl(path)):
            yield {"path": f"{path}[{index}]", "line": None}, row
    else:
        for line, row in iter_jsonl(path):
            yield {"path": str(path), "line": line}, row


def eurus_stage1_sample(row: dict[str, Any], *, path: str, line: int | None) -> dict[str, Any]:
    """One EurusPRM-Stage1-Data row as an outcome sample ``{prompt, completion, label}``.

    The row holds the conversation in ``response`` (the prompt turns, then the assistant's answer)
    and its correctness in ``label``, the layout ImplicitPRM's CE training reads
    (``train/openrlhf/cli/train_ce.py:40-61`` writes it; ``run_ce.sh:40`` reads ``response``). As
    there, the prompt is every turn but the last, rendered at training time by the PRM's chat
    template with the generation prompt, and the completion is the answer's text.
    """
    messages = require_field(row, "response", path=path, line=line, kind=list)
    if len(messages) < 2:
        raise InputError("expected the prompt turns and the assistant's answer (2 messages or more)",
                         path=path, line=line, field="response")
    for index, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise InputError("expected a {role, content} message", path=path, line=line,
                             field=f"response[{index}]")
    answer = messages[-1]
    if answer["role"] != "assistant":
        raise InputError(f"the last message must be the assistant's answer, got role '{answer['role']}'",
                         path=path, line=line, field=f"response[{len(messages) - 1}]")
    if not answer["content"].strip():
        raise InputError("empty response", path=path, line=line, field=f"response[{len(messages) - 1}]")
    label = _check_label(row, path=path, line=line)
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
    return {"prompt": prompt, "completion": answer["content"], "label": label}


@dataclass(frozen=True)
class EncodedResponse:
    """Token ids of a prompt and of its response, and each response token's character span in the
    response text (``(n, n)`` for an appended EOS), which maps tokens to reasoning steps."""

    prompt_ids: list[int]
    response_ids: list[int]
    offsets: list[tuple[int, int]]


def encode_responses(tokenizer, prompts: Sequence[Prompt], responses: Sequence[str], *,
                     append_eos: bool) -> list[EncodedResponse]:
    """Tokenize prompts and responses separately, in two batched tokenizer calls (no special tokens
    added; an EOS is appended to each response when ``append_eos``, as a finished sample ends so)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("step rewards need a fast tokenizer (character offsets); "
                         f"{type(tokenizer).__name__} is not one")
    if append_eos and tokenizer.eos_token_id is None:
        raise InputError("append_eos is set but the tokenizer has no EOS token")
    if not prompts:
        return []
    prompt_ids = tokenizer([render_prompt(tokenizer, p) for p in prompts], add_special_tokens=False)["input_ids"]
    encoded = tokenizer(list(responses), add_special_tokens=False, return_offsets_mapping=True)
    items = []
    for ids, response_ids, offsets, response in zip(prompt_ids, encoded["input_ids"],
                                                    encoded["offset_mapping"], responses):
        response_ids, offsets = list(response_ids), [tuple(span) for span in offsets]
        if append_eos:
            response_ids.append(tokenizer.eos_token_id)
            offsets.append((len(response), len(response)))
        items.append(EncodedResponse(list(ids), response_ids, offsets))
    return items


def encode_response(tokenizer, prompt: Prompt, response: str, *, append_eos: bool) -> EncodedResponse:
    """:func:`encode_responses` for a single response."""
    return encode_responses(tokenizer, [prompt], [response], append_eos=append_eos)[0]


# The OpenRLHF CE dataset that trained EurusPRM (ImplicitPRM, train/openrlhf/datasets/ce_dataset.py)
# drops a sample whose prompt leaves fewer than 3 tokens of room (lines 118-120) and, when it cuts a
# response, writes the EOS over the last token it keeps (lines 148-150): a cut response still ends
# with an EOS.
MIN_RESPONSE_ROOM = 3


def truncate(prompt_ids: list[int], completion_ids: list[int], max_length: int | None,
             eos_token_id: int | None = None) -> list[int] | None:
    """The completion cut so prompt + completion fit ``max_length``: its first ``room - 1`` tokens
    and ``eos_token_id`` (when given; the first ``room`` tokens otherwise). None when the prompt
    leaves fewer than :data:`MIN_RESPONSE_ROOM` tokens, as OpenRLHF drops such samples."""
    if max_length is None or len(prompt_ids) + len(completion_ids) <= max_length:
        return completion_ids
    room = max_length - len(prompt_ids)
    if room < MIN_RESPONSE_ROOM:
        return None
    return completion_ids[:room] if eos_token_id is None else completion_ids[:room - 1] + [eos_token_id]


def tokenize_outcome_samples(records: Sequence[dict], tokenizer, *, max_length: int | None,
                             append_eos: bool) -> list[dict[str, Any]]:
    """``{prompt_ids, completion_ids, label}`` rows; samples whose prompt alone (nearly) fills
    ``max_length`` are dropped (with a warning), longer completions are cut to fit, keeping their
    EOS (:func:`truncate`)."""
    encoded = encode_responses(tokenizer, [r["prompt"] for r in records], [r["completion"] for r in records],
                               append_eos=append_eos)
    eos = tokenizer.eos_token_id if append_eos else None
    rows = []
    for record, item in zip(records, encoded):
        completion_ids = truncate(item.prompt_ids, item.response_ids, max_length, eos)
        if completion_ids is not None:
            rows.append({"prompt_ids": item.prompt_ids, "completion_ids": completion_ids,
                         "label": record["label"]})
    _warn_dropped(len(records) - len(rows), max_length)
    return rows


def tokenize_pairs(records: Sequence[dict], tokenizer, *, max_length: int | None,
                   append_eos: bool) -> list[dict[str, Any]]:
    """``{prompt_ids, chosen_ids, rejected_ids}`` rows (truncation as for outcome samples)."""
    prompts = [r["prompt"] for r in records]
    chosen = encode_responses(tokenizer, prompts, [r["chosen"] for r in records], append_eos=append_eos)
    rejected = encode_responses(tokenizer, prompts, [r["rejected"] for r in records], append_eos=append_eos)
    eos = tokenizer.eos_token_id if append_eos else None
    rows = []
    for good, bad in zip(chosen, rejected):
        chosen_ids = truncate(good.prompt_ids, good.response_ids, max_length, eos)
        rejected_ids = truncate(good.prompt_ids, bad.response_ids, max_length, eos)
        if chosen_ids is not None and rejected_ids is not None:
            rows.append({"prompt_ids": good.prompt_ids, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
    _warn_dropped(len(records) - len(rows), max_length)
    return rows


def _warn_dropped(count: int, max_length: int | None) -> None:
    if count:
        logger.warning("dropped %d examples whose prompt leaves fewer than %d tokens for a response "
                       "in max_length=%s tokens", count, MIN_RESPONSE_ROOM, max_length)


def join_right_padded(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                      pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``prompt + completion`` rows: ``input_ids``, ``attention_mask`` and
    ``completion_mask`` (1 on the completion's tokens). Right padding keeps every real token at its
    unpadded position, so log-probs do not depend on what else is in the batch."""
    sequences, masks = [], []
    for prompt, completion in zip(prompt_ids, completion_ids, strict=True):
        sequences.append(torch.tensor(list(prompt) + list(completion), dtype=torch.long))
        masks.append(torch.tensor([0] * len(prompt) + [1] * len(completion), dtype=torch.long))
    return {"input_ids": pad(sequences, padding_value=pad_token_id),
            "attention_mask": pad([torch.ones_like(s) for s in sequences], padding_value=0),
            "completion_mask": pad(masks, padding_value=0)}


@dataclass
class ImplicitPRMCollator:
    """Batches tokenized rows for :class:`~primekit.prm.trainer.ImplicitPRMTrainer`.

    Outcome rows give ``input_ids / attention_mask / completion_mask / labels``. With ``kto_kl``
    it adds ``kl_*`` tensors: prompt i joined with completion ``kl_pair_indices(B)[i]`` (another
    sample's), the mismatched pairs from which KTO estimates KL(pi || pi_ref). Pair rows give one
    batch of 2B sequences, the B chosen ones first, then the B rejected ones. Precomputed reference
    log-probs (``ref_logps``, or ``ref_chosen_logps`` / ``ref_rejected_logps``) are passed on.
    """

    pad_token_id: int
    kto_kl: bool = False

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [row["prompt_ids"] for row in rows]
        if "chosen_ids" in rows[0]:
            completions = [row["chosen_ids"] for row in rows] + [row["rejected_ids"] for row in rows]
            batch = join_right_padded(prompts + prompts, completions, self.pad_token_id)
            if "ref_chosen_logps" in rows[0]:
                batch["ref_logps"] = torch.tensor([row["ref_chosen_logps"] for row in rows]
                                                  + [row["ref_rejected_logps"] for row in rows])
            return batch
        completions = [row["completion_ids"] for row in rows]
        batch = join_right_padded(prompts, completions, self.pad_token_id)
        batch["labels"] = torch.tensor([float(row["label"]) for row in rows])
        if "ref_logps" in rows[0]:
            batch["ref_logps"] = torch.tensor([row["ref_logps"] for row in rows])
        if self.kto_kl:
            shifted = [completions[j] for j in kl_pair_indices(len(rows)).tolist()]
            batch.update({f"kl_{key}": value for key, value in
                          join_right_padded(prompts, shifted, self.pad_token_id).items()})
        return batch


def load_prm_datasets(tokenizer, *, pairs: bool, train_file: str | os.PathLike,
                      eval_file: str | os.PathLike | None, eval_fraction: float, max_length: int | None,
                      append_eos: bool, seed: int):
    """Tokenized ``datasets.Dataset`` splits for training: ``(train, eval or None)``.

    ``pairs`` picks the file format (pairs for dpo / nca, outcome samples otherwise). Without an
    ``eval_file`` a seeded random ``eval_fraction`` of the training file is held out.
    """
    from datasets import Dataset  # heavy: loaded on use, so importing this module stays fast

    read, tokenize = (read_pairs, tokenize_pairs) if pairs else (read_outcome_samples, tokenize_outcome_samples)
    train_records = read(train_file)
    eval_records = read(eval_file) if eval_file is not None else []
    if eval_file is None and eval_fraction > 0:
        order = torch.randperm(len(train_records), generator=torch.Generator().manual_seed(seed)).tolist()
        held_out = max(1, round(eval_fraction * len(train_records)))
        if held_out >= len(train_records):
            raise InputError(f"eval_fraction {eval_fraction} leaves no training samples", path=train_file)
        eval_records = [train_records[i] for i in order[:held_out]]
        train_records = [train_records[i] for i in order[held_out:]]

    def build(records):
        rows = tokenize(records, tokenizer, max_length=max_length, append_eos=append_eos)
        return Dataset.from_list(rows) if rows else None

    train = build(train_records)
    if train is None:
        raise InputError(f"no training sample fits max_length={max_length}", path=train_file)
    return train, build(eval_records) if eval_records else None
