"""Reading an implicit PRM: token, step and sequence rewards from a PRM and its reference.

An implicit PRM is a causal LM pi_phi trained only on outcome labels; its process rewards come for
free as the per-token log-ratio against a frozen reference pi_ref:

    q_t = log pi_phi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t),    r_t = beta * q_t,

a step's reward is the sum of r_t over the step's tokens and the sequence reward is the sum over
all of them. The math lives in small pure functions (:func:`logprobs_to_token_rewards`,
:func:`step_spans`, :func:`token_steps`, :func:`sum_by_step`, :func:`aggregate_steps`); the model
plumbing is :func:`response_logprobs` (one forward pass, log-probs of the response tokens of a
padded batch, shared with the PRM trainer, the RL trainer and Best-of-N scoring) and
:class:`ImplicitPRM`, which batches strings or token ids through both models.

When the PRM is a PEFT LoRA model and no reference is given, the reference log-probs come from the
same weights with the adapter switched off (``model.disable_adapter()``): the LoRA base *is* the
reference, so no second copy of the base model is held.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm
from trl.trainer.utils import selective_log_softmax

from primekit.errors import InputError
from primekit.prm.data import EncodedResponse, Prompt, encode_responses, join_right_padded

__all__ = [
    "AGGREGATES",
    "RECORD_FILE",
    "Aggregate",
    "ImplicitPRM",
    "ResponseRewards",
    "aggregate_steps",
    "is_peft_model",
    "logprobs_to_token_rewards",
    "reference_logprobs",
    "response_logprobs",
    "step_spans",
    "sum_by_step",
    "token_steps",
    "write_prm_record",
]

Aggregate = Literal["min", "last", "mean", "sum"]
AGGREGATES: tuple[str, ...] = ("min", "last", "mean", "sum")
RECORD_FILE = "implicit_prm.json"  # written next to a trained PRM: its reference, beta, EOS handling
DEFAULT_BETA = 0.05


# ---------------------------------------------------------------------------------------------
# Pure math


def logprobs_to_token_rewards(prm_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                              mask: torch.Tensor, beta: float) -> torch.Tensor:
    """r_t = beta * (log pi_prm - log pi_ref) where ``mask`` is 1, exactly 0 elsewhere.

    With beta = 1 this is the log-ratio q_t itself. ``torch.where`` rather than a product keeps a
    non-finite value at a padding position (a -inf log-prob of a pad token) out of the result.
    """
    if not prm_logprobs.shape == ref_logprobs.shape == mask.shape:
        raise ValueError(f"logprobs_to_token_rewards: shapes differ, {tuple(prm_logprobs.shape)}, "
                         f"{tuple(ref_logprobs.shape)}, {tuple(mask.shape)}")
    ratio = prm_logprobs - ref_logprobs
    return torch.where(mask.bool(), beta * ratio, torch.zeros_like(ratio))


def step_spans(text: str, separator: str = "\n") -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the reasoning steps of ``text``.

    A step ends right after each occurrence of ``separator`` (so the separator belongs to the step
    it closes). A span holding only whitespace -- a blank line, text after a trailing separator --
    is no step of its own and joins its neighbour, so ``"a\\n\\nb"`` has two steps, not three. Text
    without a separator (or empty text) is one step.
    """
    if not separator:
        raise ValueError("step_spans: the separator must be a non-empty string")
    bounds = [0]
    found = text.find(separator)
    while found != -1:
        bounds.append(found + len(separator))
        found = text.find(separator, found + len(separator))
    bounds.append(len(text))
    spans: list[tuple[int, int]] = []
    for start, end in zip(bounds, bounds[1:]):
        if end == start:
            continue
        if spans and not text[start:end].strip():
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    if len(spans) > 1 and not text[spans[0][0]:spans[0][1]].strip():
        spans[:2] = [(spans[0][0], spans[1][1])]  # leading blank lines belong to the first step
    return spans or [(0, len(text))]


def token_steps(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """The step index of each token, from its character span ``(start, end)`` in the text.

    A token belongs to the step holding its last character, so a BPE token that fuses the end of a
    step with the separator (``".\\n\\n"``) counts for the step it closes. A zero-width token (a
    special token such as an appended EOS) joins the step of the token before it.
    """
    ends = [end for _, end in spans]
    steps, current = [], 0
    for start, end in offsets:
        if end > start:
            current = min(bisect.bisect_left(ends, end), len(spans) - 1)
        steps.append(current)
    return steps


def sum_by_step(token_values: Sequence[float], steps: Sequence[int], num_steps: int) -> list[float]:
    """Per-step sums of per-token values (a step's reward is the sum of its tokens' rewards)."""
    if len(token_values) != len(steps):
        raise ValueError(f"sum_by_step: {len(token_values)} values but {len(steps)} step indices")
    sums = [0.0] * num_steps
    for value, step in zip(token_values, steps):
        sums[step] += float(value)
    return sums


def aggregate_steps(step_rewards: Sequence[float], how: Aggregate = "min") -> float:
    """One ranking score from a response's step rewards.

    ``min``: the weakest step (the papers' Best-of-N default: one wrong step sinks a solution);
    ``mean``: the average step; ``sum``: the total. ``last`` is the implicit Q value after the final
    step, i.e. the running sum at the end -- the sequence reward, so it equals ``sum``; it is kept
    under the name the papers use for "rank by the outcome reward".
    """
    if not step_rewards:
        raise ValueError("aggregate_steps: a response has at least one step")
    if how == "min":
        return float(min(step_rewards))
    if how == "mean":
        return float(sum(step_rewards) / len(step_rewards))
    if how in ("sum", "last"):
        return float(sum(step_rewards))
    raise ValueError(f"aggregate_steps: unknown aggregate {how!r} (choose from {', '.join(AGGREGATES)})")


# ---------------------------------------------------------------------------------------------
# Model plumbing


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


LOGPROB_CHUNK_ELEMENTS = 2**26  # float32 logits turned into log-probs at once (256 MiB)


def _gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., target] in float32, a few rows at a time.

    Rows are grouped so that at most ``LOGPROB_CHUNK_ELEMENTS`` logits are upcast together: a
    whole toy batch in one call, one row at a time for a 150K vocabulary and long responses.
    """
    batch, length, vocab = logits.shape
    rows = max(1, LOGPROB_CHUNK_ELEMENTS // max(1, length * vocab))
    parts = [selective_log_softmax(chunk.float().reshape(1, -1, vocab), target.reshape(1, -1)).reshape(target.shape)
             for chunk, target in zip(logits.split(rows), targets.split(rows))]
    return torch.cat(parts)


def response_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      response_mask: torch.Tensor) -> torch.Tensor:
    """log pi(input_ids[b, t] | input_ids[b, :t]) at every response position, 0 elsewhere; (B, T).

    Works for any padding (left, right, or TRL's left-padded prompt + right-padded completion):
    positions are counted from the attention mask. Only the logits of the columns from the first
    response token on are materialised (``logits_to_keep``), and the log-softmax is taken in float32
    a few rows at a time, so a 150K vocabulary in bf16 neither blows up memory nor loses precision.
    Gradients flow (the trainer calls it on the PRM); wrap it in ``torch.no_grad()`` to score.
    """
    device = _model_device(model)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    response_mask = response_mask.to(device).bool()
    batch, length = input_ids.shape
    if response_mask[:, 0].any():
        raise ValueError("response_logprobs: a response token at position 0 has no context")
    columns = response_mask.any(dim=0).nonzero()
    if columns.numel() == 0:
        return torch.zeros(batch, length, device=device)
    first = int(columns[0])
    position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=length - first + 1, use_cache=False).logits[:, :-1]
    logps = _gather_logprobs(logits, input_ids[:, first:]).masked_fill(~response_mask[:, first:], 0.0)
    return torch.cat([logps.new_zeros(batch, first), logps], dim=1)


def is_peft_model(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def reference_logprobs(prm: torch.nn.Module, ref: torch.nn.Module | None, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """:func:`response_logprobs` of the reference, without gradients. ``ref=None`` reads the
    reference from ``prm`` itself with its LoRA adapter disabled."""
    if ref is None and not is_peft_model(prm):
        raise ValueError("no reference model: pass one, or use a PEFT (LoRA) PRM whose base is the reference")
    adapter_off = prm.disable_adapter() if ref is None else contextlib.nullcontext()
    with torch.no_grad(), adapter_off:
        return response_logprobs(prm if ref is None else ref, input_ids, attention_mask, response_mask)


@dataclass
class ResponseRewards:
    """Everything a PRM says about one response: its tokens (the EOS included when appended), their
    rewards r_t, the per-step rewards, and the sequence reward beta * sum_t q_t."""

    token_ids: list[int]
    token_rewards: torch.Tensor
    step_rewards: list[float]
    sequence_reward: float


def write_prm_record(directory: str | os.PathLike, *, reference: str | None, beta: float,
                     append_eos: bool) -> None:
    """Record, next to a trained PRM, how to read it: its reference model, beta and whether
    responses end with an EOS token. :meth:`ImplicitPRM.from_pretrained` reads it back."""
    from primekit.io import atomic_write_json

    atomic_write_json(Path(directory) / RECORD_FILE,
                      {"reference": reference, "beta": beta, "append_eos": append_eos})


def _read_prm_record(directory: str) -> dict:
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON ({err.msg})", path=path, line=err.lineno) from None
    if not isinstance(record, dict):
        raise InputError("expected a JSON object", path=path)
    return record


class ImplicitPRM:
    """Token, step and sequence rewards of responses, batched through a PRM and its reference.

    ``ref=None`` needs a PEFT LoRA ``prm``: the reference is its base (adapter disabled).
    Responses are sorted by length into batches of ``batch_size`` to limit padding, and every
    reading runs under ``torch.no_grad()``. The models are used in whatever mode they are in (a
    trainer may share its PRM), so pass them in eval mode; :meth:`from_pretrained` does.
    ``append_eos`` must match how the PRM was trained (:class:`~primekit.prm.trainer.ImplicitPRMTrainer`
    appends one, as sampled responses end so).
    """

    def __init__(self, prm: torch.nn.Module, ref: torch.nn.Module | None, tokenizer,
                 beta: float = DEFAULT_BETA, batch_size: int = 16, append_eos: bool = True):
        if ref is None and not is_peft_model(prm):
            raise ValueError("ImplicitPRM: ref=None needs a PEFT (LoRA) PRM whose base is the reference")
        if batch_size < 1:
            raise ValueError(f"ImplicitPRM: batch_size must be >= 1, got {batch_size}")
        self.prm, self.ref, self.tokenizer = prm, ref, tokenizer
        self.beta, self.batch_size, self.append_eos = beta, batch_size, append_eos

    @classmethod
    def from_pretrained(cls, prm_path: str | os.PathLike, ref_path: str | os.PathLike | None = None,
                        beta: float | None = None, dtype: str = "auto",
                        device: str | torch.device | None = None, batch_size: int = 16,
                        append_eos: bool | None = None) -> ImplicitPRM:
        """Load a PRM (a hub name or a local path) and its reference.

        * A LoRA adapter directory (``adapter_config.json``): its base model is loaded once with the
          adapter on top and serves as the reference too, unless ``ref_path`` names another one.
        * A full model: the reference is ``ref_path``, or the one recorded in the directory's
          ``implicit_prm.json`` (``prime-prm train`` writes it). There is no safe default: an
          implicit PRM is only meaningful against the model it was initialised from (EurusPRM's
          reference is Qwen2.5-Math-7B-Instruct, its starting point), so without either this is an
          :class:`InputError`.

        ``beta`` and ``append_eos`` default to the recorded values, else 0.05 and True. ``device``
        defaults to CUDA when available.
        """
        from primekit.models import load_causal_lm, load_tokenizer

        prm_path = str(prm_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        record = _read_prm_record(prm_path)
        adapter_config = Path(prm_path) / "adapter_config.json"
        if adapter_config.is_file():
            from peft import PeftModel

            base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
            if not base:
                raise InputError("adapter config names no base model", path=adapter_config,
                                 field="base_model_name_or_path")
            prm = PeftModel.from_pretrained(load_causal_lm(base, dtype=dtype, device=device), prm_path)
            prm.requires_grad_(False)
            has_tokenizer = (Path(prm_path) / "tokenizer_config.json").is_file()
            tokenizer = load_tokenizer(prm_path if has_tokenizer else base)
            ref = None if ref_path is None else load_causal_lm(ref_path, dtype=dtype, device=device)
        else:
            reference = ref_path or record.get("reference")
            if not reference:
                raise InputError("an implicit PRM is read against the model it was initialised from; "
                                 "pass its reference (--ref), e.g. Qwen/Qwen2.5-Math-7B-Instruct for "
                                 f"EurusPRM (no {RECORD_FILE} records one)", path=prm_path)
            prm = load_causal_lm(prm_path, dtype=dtype, device=device)
            ref = load_causal_lm(reference, dtype=dtype, device=device)
            tokenizer = load_tokenizer(prm_path)
        return cls(prm, ref, tokenizer,
                   beta=record.get("beta", DEFAULT_BETA) if beta is None else beta,
                   batch_size=batch_size,
                   append_eos=record.get("append_eos", True) if append_eos is None else append_eos)

    # -- token ids -----------------------------------------------------------------------------

    def token_logratios(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        response_mask: torch.Tensor) -> torch.Tensor:
        """q_t = log pi_prm - log pi_ref at the response positions of a padded batch, 0 elsewhere;
        (B, T) on the PRM's device. Token rewards are ``beta * q``."""
        with torch.no_grad():
            prm_logps = response_logprobs(self.prm, input_ids, attention_mask, response_mask)
            ref_logps = reference_logprobs(self.prm, self.ref, input_ids, attention_mask, response_mask)
        return logprobs_to_token_rewards(prm_logps, ref_logps.to(prm_logps.device),
                                         response_mask.to(prm_logps.device), beta=1.0)

    def completion_logratios(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                             completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        """q for TRL's layout (left-padded prompts, right-padded completions); (B, C), aligned with
        ``completion_ids`` and 0 where ``completion_mask`` is 0."""
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        response_mask = torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1)
        return self.token_logratios(input_ids, attention_mask, response_mask)[:, prompt_ids.shape[1]:]

    # -- strings -------------------------------------------------------------------------------

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[EncodedResponse]:
        """Token ids (and character offsets) exactly as the PRM reads them."""
        return encode_responses(self.tokenizer, prompts, responses, append_eos=self.append_eos)

    def _token_rewards(self, encoded: Sequence[EncodedResponse], show_progress: bool) -> list[torch.Tensor]:
        order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i].prompt_ids) + len(encoded[i].response_ids)))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rewards: list[torch.Tensor | None] = [None] * len(encoded)
        progress = tqdm(total=len(encoded), desc="PRM", unit="response", disable=not show_progress)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = join_right_padded([encoded[i].prompt_ids for i in chunk],
                                      [encoded[i].response_ids for i in chunk], pad_id)
            q = self.token_logratios(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
            q = q.float().cpu()
            for row, index in enumerate(chunk):
                begin = len(encoded[index].prompt_ids)
                rewards[index] = self.beta * q[row, begin:begin + len(encoded[index].response_ids)]
            progress.update(len(chunk))
        progress.close()
        return rewards

    def rewards(self, prompts: Sequence[Prompt], responses: Sequence[str], separator: str = "\n",
                show_progress: bool = False) -> list[ResponseRewards]:
        """Token, step and sequence rewards of each response, in one pass over both models."""
        encoded = self.encode(prompts, responses)
        results = []
        for item, response, token_rewards in zip(encoded, responses,
                                                 self._token_rewards(encoded, show_progress)):
            spans = step_spans(response, separator)
            steps = sum_by_step(token_rewards.tolist(), token_steps(item.offsets, spans), len(spans))
            results.append(ResponseRewards(item.response_ids, token_rewards, steps,
                                           float(token_rewards.sum())))
        return results

    def token_rewards(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[torch.Tensor]:
        """r_t for each response token (and the appended EOS), one 1-D float tensor per response."""
        return self._token_rewards(self.encode(prompts, responses), show_progress=False)

    def step_rewards(self, prompts: Sequence[Prompt], responses: Sequence[str],
                     separator: str = "\n") -> list[list[float]]:
        """Per-step rewards of each response (steps split by ``separator``, see :func:`step_spans`)."""
        return [result.step_rewards for result in self.rewards(prompts, responses, separator)]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], aggregate: Aggregate = "min",
              separator: str = "\n") -> list[float]:
        """One ranking score per response: its step rewards aggregated (see :func:`aggregate_steps`)."""
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r} (choose from {', '.join(AGGREGATES)})")
        return [aggregate_steps(result.step_rewards, aggregate)
                for result in self.rewards(prompts, responses, separator)]
