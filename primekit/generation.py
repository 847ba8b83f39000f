"""Generation back ends with one interface: transformers (default, CPU or GPU) and vLLM (optional).

Both take prompts already rendered to text and return, per prompt, ``n`` completions as text with
whether each one stopped on its own (``finished``: an end-of-sequence token, a stop token id or a
stop string) or hit ``max_new_tokens`` (truncated). As in vLLM, a stop string is not part of the
returned text.

With ``max_model_len`` set, prompt and output together never exceed it (what vLLM does with the
model's context, ``max_model_len``: a budget larger than the room left after the prompt is cut
there); a completion stopped by that cap says ``truncated="context"`` (one stopped by
``max_new_tokens`` is just unfinished).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from primekit.errors import InputError
from primekit.models import load_causal_lm, load_tokenizer, resolve_model_name


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample: ``temperature == 0`` means greedy (then ``n`` must be 1)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    max_model_len: int | None = None  # prompt + output tokens at most (the model's context)

    def __post_init__(self) -> None:
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {self.max_model_len}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy decoding (temperature 0) gives n identical samples; "
                             "set a temperature > 0 for n > 1")


@dataclass(frozen=True)
class Completion:
    text: str
    finished: bool
    num_tokens: int
    truncated: str | None = None  # "context" when the context cap, not the budget, stopped it


CONTEXT, BUDGET = "context", "max_new_tokens"


def room(spec: SamplingSpec, prompt_tokens: int) -> tuple[int, str]:
    """How many new tokens a prompt of ``prompt_tokens`` tokens may get, and which limit that is:
    the budget, or what the context leaves after the prompt (never below 0)."""
    if spec.max_model_len is not None and spec.max_model_len - prompt_tokens < spec.max_new_tokens:
        return max(0, spec.max_model_len - prompt_tokens), CONTEXT
    return spec.max_new_tokens, BUDGET


def with_limit(completion: Completion, limit: str) -> Completion:
    """``completion`` marked ``truncated="context"`` if the context cap stopped it."""
    return replace(completion, truncated=CONTEXT) if limit == CONTEXT and not completion.finished else completion


class TransformersGenerator:
    """Batched ``model.generate`` with left padding; prompts sorted by length to limit padding."""

    def __init__(self, model, tokenizer, batch_size: int = 32, show_progress: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.max_model_len = model_context(model)
        self.batch_size = batch_size
        self.show_progress = show_progress
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], spec: SamplingSpec) -> list[list[Completion]]:
        device = next(self.model.parameters()).device
        torch.manual_seed(spec.seed)
        jobs = [(index, prompt) for index, prompt in enumerate(prompts) for _ in range(spec.n)]
        jobs.sort(key=lambda job: len(job[1]))
        results: list[list[Completion]] = [[] for _ in prompts]
        eos_ids = sorted({*_eos_ids(self.model, self.tokenizer), *spec.stop_token_ids})
        pad = self.tokenizer.pad_token_id
        batches = range(0, len(jobs), self.batch_size)
        for start in tqdm(batches, desc="generate", unit="batch", disable=not self.show_progress):
            batch = jobs[start:start + self.batch_size]
            encoded = self.tokenizer([prompt for _, prompt in batch], return_tensors="pt",
                                     padding=True, add_special_tokens=False).to(device)
            rooms = [room(spec, int(length)) for length in encoded["attention_mask"].sum(dim=1).tolist()]
            budget = max(tokens for tokens, _ in rooms)
            if budget == 0:  # no prompt of the batch leaves room in the context
                for index, _ in batch:
                    results[index].append(Completion("", False, 0, CONTEXT))
                continue
            output = self.model.generate(**encoded, generation_config=self._config(spec, eos_ids, budget),
                                         tokenizer=self.tokenizer)
            new_tokens = output[:, encoded["input_ids"].shape[1]:]
            for (index, _), tokens, (allowed, limit) in zip(batch, new_tokens, rooms):
                # a row whose context leaves less room than the batch's longest run is cut there
                tokens = tokens.tolist()[:allowed]
                if spec.stop and pad not in eos_ids and pad in tokens:
                    # a row ended by a stop string is padded; a pad that is also an end-of-sequence
                    # token is left to _completion, which counts it as the row's own finish
                    tokens = tokens[:tokens.index(pad)]
                results[index].append(with_limit(cut_at_stop(
                    _completion(tokens, eos_ids, self.tokenizer), spec.stop), limit))
        return results

    def _config(self, spec: SamplingSpec, eos_ids: list[int], max_new_tokens: int) -> GenerationConfig:
        """A complete decoding config, so that a checkpoint's own generation defaults (Qwen2.5-Math
        ships repetition_penalty 1.05, top_k 20, top_p 0.8) never change an evaluation: greedy
        is plain argmax, and sampling is temperature + top-p only, as vLLM does it."""
        sampling = ({"do_sample": True, "temperature": spec.temperature, "top_p": spec.top_p,
                     "top_k": 0} if spec.temperature > 0 else {"do_sample": False})
        return GenerationConfig(max_new_tokens=max_new_tokens, repetition_penalty=1.0,
                                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos_ids,
                                stop_strings=list(spec.stop) or None, **sampling)


def _eos_ids(model, tokenizer) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in ids + [tokenizer.eos_token_id] if i is not None})


def _completion(tokens: list[int], eos_ids: list[int], tokenizer) -> Completion:
    for position, token in enumerate(tokens):
        if token in eos_ids:
            kept = tokens[:position]
            return Completion(tokenizer.decode(kept, skip_special_tokens=True), True, len(kept) + 1)
    return Completion(tokenizer.decode(tokens, skip_special_tokens=True), False, len(tokens))


def cut_at_stop(completion: Completion, stops: Sequence[str]) -> Completion:
    """The completion up to its first stop string (excluded), which counts as a finish."""
    cuts = [at for at in (completion.text.find(stop) for stop in stops) if at >= 0]
    if not cuts:
        return completion
    return Completion(completion.text[:min(cuts)], True, completion.num_tokens)


def model_context(model) -> int | None:
    """A transformers model's context in tokens (``max_position_embeddings``), None if unknown."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


class VLLMGenerator:
    """The same interface on vLLM (``pip install primekit[vllm]``); imported only when chosen.

    Prompts go to vLLM as text, as PRIME's and Qwen's evaluation scripts pass them, so vLLM
    tokenizes them with the model's own tokenizer (``AutoTokenizer``)."""

    def __init__(self, model_name: str, dtype: str = "auto", gpu_memory_utilization: float = 0.9,
                 tensor_parallel_size: int = 1, seed: int = 0):
        try:
            from vllm import LLM  # optional: installed only for the vLLM back end
        except ImportError as err:
            raise InputError("the vLLM back end needs `pip install primekit[vllm]`") from err
        self.llm = LLM(model=model_name, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       tensor_parallel_size=tensor_parallel_size, seed=seed)

    @property
    def max_model_len(self) -> int:
        """The engine's context (the model's, unless vLLM was told otherwise)."""
        return int(self.llm.llm_engine.model_config.max_model_len)

    def generate(self, prompts: Sequence[str], spec: SamplingSpec) -> list[list[Completion]]:
        from vllm import SamplingParams  # optional extra (primekit[vllm]), loaded on use

        # vLLM tokenizes a text prompt with the model's tokenizer, special tokens as it adds them
        tokenizer = self.llm.get_tokenizer()
        rooms = [room(spec, len(tokenizer(prompt)["input_ids"])) for prompt in prompts]
        runnable = [index for index, (allowed, _) in enumerate(rooms) if allowed > 0]
        params = [SamplingParams(n=spec.n, temperature=spec.temperature, top_p=spec.top_p,
                                 max_tokens=rooms[index][0], seed=spec.seed,
                                 stop=list(spec.stop) or None,
                                 stop_token_ids=list(spec.stop_token_ids) or None)
                  for index in runnable]
        outputs = self.llm.generate([prompts[index] for index in runnable], params, use_tqdm=False) \
            if runnable else []
        results = [[Completion("", False, 0, CONTEXT)] * spec.n for _ in prompts]
        for index, out in zip(runnable, outputs, strict=True):
            results[index] = [with_limit(cut_at_stop(Completion(o.text, o.finish_reason == "stop", len(o.token_ids)),
                                                     spec.stop), rooms[index][1]) for o in out.outputs]
        return results


def make_generator(model_name: str | None, backend: str = "transformers", dtype: str = "auto",
                   device: str | None = None, batch_size: int = 32, show_progress: bool = True):
    """A generator for ``model_name`` (hub name, local path, or ``None``/``"toy"``)."""
    if backend == "vllm":
        return VLLMGenerator(resolve_model_name(model_name), dtype=dtype)
    if backend != "transformers":
        raise InputError(f"unknown generation backend '{backend}' (choose transformers or vllm)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_causal_lm(model_name, dtype=dtype, device=device)
    return TransformersGenerator(model, load_tokenizer(model_name), batch_size, show_progress)
