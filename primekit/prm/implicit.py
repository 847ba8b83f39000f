"""Implicit PRM model plumbing: log-probs of responses, and :class:`ImplicitPRM`, which batches
prompts and responses through a PRM and its reference.

The reading conventions (r = coef * q, steps, aggregates, prompt rendering, the record file) live
in :mod:`primekit.prm.reading`; this module runs the models. :func:`response_logprobs` (one forward
pass, log-probs of the response tokens of a padded batch) is shared with the PRM trainer, the RL
trainer and Best-of-N scoring.

When the PRM is a PEFT LoRA model and no reference is given, the reference log-probs come from the
same weights with the adapter switched off (``model.disable_adapter()``): the LoRA base *is* the
reference, so no second copy of the base model is held.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from primekit.arguments import PRMReadingArguments, canonical_aggregate, check_coef, check_read_out, check_step_mode
from primekit.errors import InputError
from primekit.prm.data import EncodedResponse, encode_responses, join_right_padded
from primekit.prm.reading import (
    DEFAULT_BETA,
    Prompt,
    Steps,
    card_boundaries,
    card_conversation,
    card_step_texts,
    card_values,
    implicit_rewards,
    q_values,
    split_steps,
    sum_by_step,
    token_steps,
)
from primekit.prm.reading import aggregate as aggregate_values
from primekit.prm.settings import ReadingSettings, resolve_reading

__all__ = [
    "ImplicitPRM",
    "ResponseRewards",
    "is_peft_model",
    "logprobs_to_token_rewards",
    "reference_logprobs",
    "response_logprobs",
]


def logprobs_to_token_rewards(prm_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                              mask: torch.Tensor, coef: float) -> torch.Tensor:
    """r_t = coef * (log pi_prm - log pi_ref) where ``mask`` is 1, exactly 0 elsewhere.

    With coef = 1 this is the log-ratio q_t itself. ``torch.where`` rather than a product keeps a
    non-finite value at a padding position (a -inf log-prob of a pad token) out of the result.
    """
    if not prm_logprobs.shape == ref_logprobs.shape == mask.shape:
        raise ValueError(f"logprobs_to_token_rewards: shapes differ, {tuple(prm_logprobs.shape)}, "
                         f"{tuple(ref_logprobs.shape)}, {tuple(mask.shape)}")
    ratio = prm_logprobs - ref_logprobs
    return torch.where(mask.bool(), implicit_rewards(ratio, coef), torch.zeros_like(ratio))


# ---------------------------------------------------------------------------------------------
# Model plumbing


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


LOGPROB_CHUNK_ELEMENTS = 2**26  # float32 logits turned into log-probs at once (256 MiB)


def _gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., target] in float32, a few rows at a time.

    Rows are grouped so that at most ``LOGPROB_CHUNK_ELEMENTS`` logits are upcast together: a
    whole toy batch in one call, one row at a time for a 150K vocabulary and long responses. Each
    group goes through torch's fused ``log_softmax`` (one pass over the logits) rather than a
    separate ``logsumexp``, whose temporaries of the group's full size cost more than they save on
    a 152k-column head.
    """
    batch, length, vocab = logits.shape
    rows = max(1, LOGPROB_CHUNK_ELEMENTS // max(1, length * vocab))
    parts = [chunk.float().log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
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
        from peft import PeftModel  # heavy: loaded on use, so importing this module stays fast
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
    """Everything a PRM says about one response: the text it read (the response, or its ``eurus``
    rewrite) and its steps, the token ids (the EOS included when appended), their rewards r_t, the
    per-step rewards r_k and the sequence reward coef * sum_t q_t."""

    steps: Steps
    token_ids: list[int]
    token_rewards: torch.Tensor
    step_rewards: list[float]
    sequence_reward: float

    @property
    def q_values(self) -> list[float]:
        """Q_k, the implicit Q value after each step (the running sum of the step rewards)."""
        return q_values(self.step_rewards)


class ImplicitPRM:
    """Token, step and sequence rewards of responses, batched through a PRM and its reference.

    ``ref=None`` needs a PEFT LoRA ``prm``: the reference is its base (adapter disabled).
    ``coef`` scales the log-ratios (r = coef * q); ``step_mode`` is the default way responses
    are cut into steps (:func:`primekit.prm.reading.split_steps`). Responses are sorted by length
    into batches of ``batch_size`` to limit padding, and every reading runs under
    ``torch.no_grad()``. The models are used in whatever mode they are in (a trainer may share its
    PRM), so pass them in eval mode; :meth:`from_pretrained` does. ``append_eos`` must match how
    the PRM was trained (:class:`~primekit.prm.trainer.ImplicitPRMTrainer` appends one, as sampled
    responses end so). ``read_out`` says where Q_k is read: ``steps`` (at the end of each step) or
    ``card`` (ImplicitPRM's evaluation, token for token; see :mod:`primekit.prm.reading`).
    """

    def __init__(self, prm: torch.nn.Module, ref: torch.nn.Module | None, tokenizer,
                 coef: float = DEFAULT_BETA, batch_size: int = 16, append_eos: bool = True,
                 step_mode: str = "auto", read_out: str = "steps"):
        if ref is None and not is_peft_model(prm):
            raise ValueError("ImplicitPRM: ref=None needs a PEFT (LoRA) PRM whose base is the reference")
        if batch_size < 1:
            raise ValueError(f"ImplicitPRM: batch_size must be >= 1, got {batch_size}")
        self.prm, self.ref, self.tokenizer = prm, ref, tokenizer
        self.coef, self.batch_size, self.append_eos = check_coef(coef), batch_size, append_eos
        self.step_mode = check_step_mode(step_mode)
        self.read_out = check_read_out(read_out)

    @classmethod
    def from_pretrained(cls, prm_path: str | os.PathLike, ref_path: str | os.PathLike | None = None,
                        coef: float | None = None, step_mode: str | None = None, dtype: str = "auto",
                        device: str | torch.device | None = None, batch_size: int = 16,
                        append_eos: bool | None = None, read_out: str | None = None) -> ImplicitPRM:
        """Load a PRM (a hub name, a local path or ``toy``) and its reference.

        * A LoRA adapter directory (``adapter_config.json``): its base model is loaded once with the
          adapter on top and serves as the reference too, unless ``ref_path`` names another one.
        * A full model: the reference is ``ref_path``, or the one in the PRM's ``implicit_prm.json``
          (both trainers write it), or a published PRM's (EurusPRM-Stage1: Qwen2.5-Math-7B-Instruct,
          its starting point). There is no safe default: an implicit PRM is only meaningful against
          the model it was initialised from, so without any of them this is an :class:`InputError`.

        ``coef``, ``step_mode``, ``append_eos`` and ``read_out`` default to the recorded values
        (EurusPRM-Stage1: 0.001, ``eurus`` and ``card`` as its evaluation reads it), else 0.05,
        ``auto``, True and ``steps``. ``device`` defaults to
        CUDA when available.
        """
        settings = resolve_reading(PRMReadingArguments(
            prm=str(prm_path), prm_ref=None if ref_path is None else str(ref_path), coef=coef,
            step_mode=step_mode, read_out=read_out))
        if append_eos is not None:
            settings = dataclasses.replace(settings, append_eos=append_eos)
        return cls.from_settings(settings, dtype=dtype, device=device, batch_size=batch_size)

    @classmethod
    def from_settings(cls, settings: ReadingSettings, dtype: str = "auto",
                      device: str | torch.device | None = None, batch_size: int = 16) -> ImplicitPRM:
        """Load the models that resolved reading settings name (see :meth:`from_pretrained`)."""
        from primekit.models import load_causal_lm, load_tokenizer  # loads torch: imported on use

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        prm_path = settings.prm
        adapter_config = Path(prm_path) / "adapter_config.json"
        if adapter_config.is_file():
            from peft import PeftModel  # heavy: loaded on use, so importing this module stays fast

            base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
            if not base:
                raise InputError("adapter config names no base model", path=adapter_config,
                                 field="base_model_name_or_path")
            prm = PeftModel.from_pretrained(load_causal_lm(base, dtype=dtype, device=device), prm_path)
            prm.requires_grad_(False)
            has_tokenizer = (Path(prm_path) / "tokenizer_config.json").is_file()
            tokenizer = load_tokenizer(prm_path if has_tokenizer else base)
        else:
            prm = load_causal_lm(prm_path, dtype=dtype, device=device)
            tokenizer = load_tokenizer(prm_path)
        ref = None if settings.prm_ref is None else load_causal_lm(settings.prm_ref, dtype=dtype, device=device)
        return cls(prm, ref, tokenizer, coef=settings.coef, batch_size=batch_size,
                   append_eos=settings.append_eos, step_mode=settings.step_mode, read_out=settings.read_out)

    # -- token ids -----------------------------------------------------------------------------

    def token_logratios(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        response_mask: torch.Tensor) -> torch.Tensor:
        """q_t = log pi_prm - log pi_ref at the response positions of a padded batch, 0 elsewhere;
        (B, T) on the PRM's device. Token rewards are ``coef * q``."""
        with torch.no_grad():
            prm_logps = response_logprobs(self.prm, input_ids, attention_mask, response_mask)
            ref_logps = reference_logprobs(self.prm, self.ref, input_ids, attention_mask, response_mask)
        return logprobs_to_token_rewards(prm_logps, ref_logps.to(prm_logps.device),
                                         response_mask.to(prm_logps.device), coef=1.0)

    def completion_logratios(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                             completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        """q for TRL's layout (left-padded prompts, right-padded completions); (B, C), aligned with
        ``completion_ids`` and 0 where ``completion_mask`` is 0."""
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        response_mask = torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1)
        return self.token_logratios(input_ids, attention_mask, response_mask)[:, prompt_ids.shape[1]:]

    # -- strings -------------------------------------------------------------------------------

    def encode(self, prompts: Sequence[Prompt], texts: Sequence[str]) -> list[EncodedResponse]:
        """Token ids (and character offsets) exactly as the PRM reads them: the prompt (chat
        messages through the PRM's chat template) and the response text tokenized separately."""
        return encode_responses(self.tokenizer, prompts, texts, append_eos=self.append_eos)

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
                rewards[index] = implicit_rewards(q[row, begin:begin + len(encoded[index].response_ids)], self.coef)
            progress.update(len(chunk))
        progress.close()
        return rewards

    def read(self, prompts: Sequence[Prompt], steps: Sequence[Steps],
             show_progress: bool = False) -> list[ResponseRewards]:
        """Rewards of responses whose steps are already known (``Steps``: the exact text and its
        step spans), in one pass over both models. ProcessBench's labelled steps are read so."""
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} responses")
        if self.read_out == "card":
            return self._card_read(prompts, steps, show_progress)
        encoded = self.encode(prompts, [item.text for item in steps])
        results = []
        for item, known, token_rewards in zip(encoded, steps, self._token_rewards(encoded, show_progress)):
            by_step = sum_by_step(token_rewards.tolist(), token_steps(item.offsets, known.spans), len(known))
            results.append(ResponseRewards(known, item.response_ids, token_rewards, by_step,
                                           float(token_rewards.sum())))
        return results

    def _card_read(self, prompts: Sequence[Prompt], steps: Sequence[Steps],
                   show_progress: bool) -> list[ResponseRewards]:
        """:meth:`read` as ImplicitPRM's evaluation reads: the whole conversation tokenized at once,
        the card's Q_k (:func:`~primekit.prm.reading.card_values`) as the running values and their
        increments as step rewards. The tokens read are those from the card's first boundary (the
        last prompt token) to the end-of-turn marker."""
        encoded, bounds = [], []
        for prompt, known in zip(prompts, steps):
            if isinstance(prompt, str):
                raise InputError("read_out card reads the conversation through the PRM's chat template: "
                                 "give the prompt as chat messages (prm_context chat)", field="read_out")
            pieces = card_step_texts(known)
            ids = self.tokenizer.encode(card_conversation(self.tokenizer, prompt, pieces), add_special_tokens=False)
            ends = card_boundaries(self.tokenizer, prompt, pieces)
            first, last = ends[0], ends[-1] + 1  # tokens e_0 .. e_K + 1 are read
            if not 1 <= first <= last < len(ids):
                raise InputError(f"read_out card: the chat template gives boundaries {ends} for a conversation "
                                 f"of {len(ids)} tokens", field="read_out")
            encoded.append(EncodedResponse(ids[:first], ids[first:last + 1], []))
            bounds.append([end - first + 1 for end in ends])  # counted from token e_0 - 1
        results = []
        for item, known, token_rewards, ends in zip(encoded, steps, self._token_rewards(encoded, show_progress), bounds):
            values = card_values([0.0, *token_rewards.tolist()], ends)  # token e_0 - 1 is not read
            increments = [value - before for value, before in zip(values, [0.0, *values[:-1]])]
            results.append(ResponseRewards(known, item.response_ids, token_rewards, increments,
                                           float(token_rewards.sum())))
        return results

    def rewards(self, prompts: Sequence[Prompt], responses: Sequence[str], step_mode: str | None = None,
                show_progress: bool = False) -> list[ResponseRewards]:
        """Token, step and sequence rewards of each response, its steps cut by ``step_mode``
        (default: this PRM's; see :func:`primekit.prm.reading.split_steps`)."""
        mode = step_mode or self.step_mode
        return self.read(prompts, [split_steps(response, mode) for response in responses], show_progress)

    def token_rewards(self, prompts: Sequence[Prompt], responses: Sequence[str],
                      step_mode: str | None = None) -> list[torch.Tensor]:
        """r_t for each token read (and the appended EOS), one 1-D float tensor per response."""
        return [result.token_rewards for result in self.rewards(prompts, responses, step_mode)]

    def step_rewards(self, prompts: Sequence[Prompt], responses: Sequence[str],
                     step_mode: str | None = None) -> list[list[float]]:
        """Per-step rewards r_k of each response."""
        return [result.step_rewards for result in self.rewards(prompts, responses, step_mode)]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], aggregate: str = "min_q",
              step_mode: str | None = None) -> list[float]:
        """One ranking score per response: its step rewards aggregated (``min_q``, ``min_step``,
        ``last``, ``mean``, ``sum_q``; see :func:`primekit.prm.reading.aggregate`)."""
        how = canonical_aggregate(aggregate)
        return [aggregate_values(result.step_rewards, how)
                for result in self.rewards(prompts, responses, step_mode)]
