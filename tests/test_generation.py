"""Generation back ends on a tiny random Qwen2: determinism, n samples, finished/truncated flags,
and a vLLM back end that is optional in every sense."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from primekit import toy
from primekit.errors import InputError
from primekit.generation import (
    Completion,
    SamplingSpec,
    TransformersGenerator,
    VLLMGenerator,
    _completion,
    make_generator,
)

PROMPTS = ["Compute 12+34-5\n", "Compute 7+8\n", "Compute 99-1+2\n"]


def spread_model(seed: int = 0):
    """A random tiny Qwen2 with weights scaled up 5x: at the usual 0.02 init every prompt's greedy
    continuation is just newlines; scaled, outputs differ between prompts and some end on EOS."""
    model = toy.random_model(seed=seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.mul_(5)
    return model


@pytest.fixture(scope="module")
def model():
    return spread_model()


@pytest.fixture()
def generator(model):
    return TransformersGenerator(model, toy.build_tokenizer(), batch_size=2, show_progress=False)


def test_completion_cuts_at_the_first_eos():
    tokenizer = toy.build_tokenizer()
    ids = tokenizer("12+3=15", add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    # "12+3=15" EOS "7": text up to the EOS; the EOS counts as a generated token
    assert _completion(ids + [eos] + ids[:1], [eos], tokenizer) == Completion("12+3=15", True, len(ids) + 1)
    assert _completion(ids, [eos], tokenizer) == Completion("12+3=15", False, len(ids))


def test_greedy_is_deterministic_and_batch_independent(model, generator):
    spec = SamplingSpec(n=1, temperature=0.0, max_new_tokens=6)
    first = generator.generate(PROMPTS, spec)
    assert first == generator.generate(PROMPTS, spec)
    assert len({c[0].text for c in first}) == len(PROMPTS)
    alone = TransformersGenerator(model, toy.build_tokenizer(), batch_size=1, show_progress=False)
    assert [c[0].text for c in alone.generate(PROMPTS, spec)] == [c[0].text for c in first]
    # greedy is the argmax continuation of each unpadded prompt, token by token
    tokenizer = toy.build_tokenizer()
    for prompt, completion in zip(PROMPTS, first):
        tokens = argmax_continuation(model, tokenizer, prompt, 6)
        assert completion[0] == _completion(tokens, [tokenizer.eos_token_id], tokenizer)


def argmax_continuation(model, tokenizer, prompt: str, steps: int) -> list[int]:
    """Greedy decoding written out: append the most likely token until EOS or ``steps``."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    tokens: list[int] = []
    with torch.no_grad():
        while len(tokens) < steps and tokenizer.eos_token_id not in tokens:
            tokens.append(int(model(ids).logits[0, -1].argmax()))
            ids = torch.cat([ids, torch.tensor([[tokens[-1]]])], dim=1)
    return tokens


def test_checkpoint_generation_defaults_do_not_leak():
    # e.g. Qwen2.5-Math-7B-Instruct ships repetition_penalty 1.05, top_k 20, top_p 0.8, sampling on
    model, tokenizer = spread_model(), toy.build_tokenizer()
    plain = TransformersGenerator(spread_model(), tokenizer, show_progress=False)
    model.generation_config.update(repetition_penalty=3.0, top_k=1, top_p=0.5, do_sample=True,
                                   temperature=0.2)
    generator = TransformersGenerator(model, tokenizer, show_progress=False)
    greedy = SamplingSpec(max_new_tokens=6)
    assert generator.generate(PROMPTS, greedy) == plain.generate(PROMPTS, greedy)
    sampled = SamplingSpec(n=3, temperature=1.0, max_new_tokens=6, seed=1)
    assert generator.generate(PROMPTS, sampled) == plain.generate(PROMPTS, sampled)


def test_sampling_returns_n_completions_per_prompt_reproducibly(generator):
    spec = SamplingSpec(n=3, temperature=1.0, max_new_tokens=5, seed=7)
    outputs = generator.generate(PROMPTS[:2], spec)
    assert [len(samples) for samples in outputs] == [3, 3]
    assert all(1 <= c.num_tokens <= 5 for samples in outputs for c in samples)
    assert outputs == generator.generate(PROMPTS[:2], spec)  # same seed, same samples
    texts = {c.text for samples in outputs for c in samples}
    assert len(texts) > 1  # temperature 1 on a random model does not repeat itself


def test_finished_and_truncated_flags(model):
    tokenizer = toy.build_tokenizer()
    spec = SamplingSpec(n=1, temperature=0.0, max_new_tokens=6)
    completions = [c[0] for c in TransformersGenerator(model, tokenizer, show_progress=False)
                   .generate(PROMPTS, spec)]
    for prompt, completion in zip(PROMPTS, completions):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            raw = model.generate(ids, max_new_tokens=6, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
        ended_on_eos = tokenizer.eos_token_id in raw
        assert completion.finished == ended_on_eos
        assert completion.num_tokens == (raw.index(tokenizer.eos_token_id) + 1 if ended_on_eos else 6)
    assert {c.finished for c in completions} == {True, False}  # this model gives both kinds

    # a model whose first greedy token is declared an end-of-sequence token stops at once
    first_token = tokenizer(completions[0].text, add_special_tokens=False)["input_ids"][0]
    stopping = spread_model()
    stopping.generation_config.eos_token_id = [tokenizer.eos_token_id, first_token]
    stopped = TransformersGenerator(stopping, tokenizer, show_progress=False).generate(PROMPTS[:1], spec)
    assert stopped[0][0] == Completion("", True, 1)


def test_sampling_spec_checks():
    with pytest.raises(ValueError, match="n must be"):
        SamplingSpec(n=0)
    with pytest.raises(ValueError, match="temperature > 0"):
        SamplingSpec(n=2, temperature=0.0)


def test_vllm_missing_is_a_clear_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(InputError, match=r"pip install primekit\[vllm\]"):
        VLLMGenerator("some/model")
    with pytest.raises(InputError, match="vllm"):
        make_generator("some/model", backend="vllm")


def test_unknown_backend():
    with pytest.raises(InputError, match="unknown generation backend 'tgi'"):
        make_generator("some/model", backend="tgi")


def test_importing_evaluation_never_imports_vllm():
    code = ("import sys, primekit.generation, primekit.eval.commands, primekit.eval.runner; "
            "assert 'vllm' not in sys.modules, 'vllm imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_stop_strings_cut_the_output_like_vllm(model, generator):
    """A stop string ends generation; the text stops before it and counts as finished."""
    plain = generator.generate(PROMPTS, SamplingSpec(max_new_tokens=6))
    text = next(c[0].text for c in plain if len(c[0].text) >= 3)
    stop = text[1:3]
    stopped = generator.generate(PROMPTS, SamplingSpec(max_new_tokens=6, stop=(stop,)))
    for before, after in zip(plain, stopped):
        if stop in before[0].text:
            assert after[0].text == before[0].text[:before[0].text.index(stop)]
            assert after[0].finished
        else:
            assert after[0] == before[0]


def test_stop_strings_keep_an_eos_finish_when_the_pad_is_the_eos(model):
    """Qwen's tokenizers pad with <|endoftext|>, one of their end-of-sequence tokens: a row that
    ends on it stays finished (and counts it) when stop strings are set."""
    tokenizer = toy.build_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    generator = TransformersGenerator(model, tokenizer, batch_size=2, show_progress=False)
    plain = generator.generate(PROMPTS, SamplingSpec(max_new_tokens=6))
    assert any(c[0].finished for c in plain)  # some row ends on the EOS
    never = generator.generate(PROMPTS, SamplingSpec(max_new_tokens=6, stop=("9999999",)))
    assert never == plain


def test_room_is_the_budget_or_what_the_context_leaves():
    from primekit.generation import room

    assert room(SamplingSpec(max_new_tokens=100), 5000) == (100, "max_new_tokens")
    assert room(SamplingSpec(max_new_tokens=100, max_model_len=4096), 3000) == (100, "max_new_tokens")
    # MATH-500's 8192 budget on a 4096-context model with a 300-token prompt: 3796 tokens
    assert room(SamplingSpec(max_new_tokens=8192, max_model_len=4096), 300) == (3796, "context")
    assert room(SamplingSpec(max_new_tokens=10, max_model_len=50), 60) == (0, "context")
    with pytest.raises(ValueError):
        SamplingSpec(max_model_len=0)


def test_context_cap_cuts_each_row_at_its_own_room(model, generator):
    """Prompt + output never exceed the cap; each row of a batch is cut at what the context leaves
    it, and what it keeps is the uncapped greedy output's beginning."""
    tokenizer = toy.build_tokenizer()
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    free = generator.generate(PROMPTS, SamplingSpec(max_new_tokens=12))
    cap = max(lengths) + 4
    capped = generator.generate(PROMPTS, SamplingSpec(max_new_tokens=12, max_model_len=cap))
    for length, [whole], [cut] in zip(lengths, free, capped):
        assert length + cut.num_tokens <= cap
        assert whole.text.startswith(cut.text)
        if not cut.finished:
            assert cut.truncated == "context" and cut.num_tokens == cap - length
    assert any(c[0].truncated == "context" for c in capped)
    assert all(c[0].truncated is None for c in free)
    # a prompt longer than the context gets nothing, marked as cut by the context
    assert generator.generate(PROMPTS[:1], SamplingSpec(max_new_tokens=5, max_model_len=2)) == [
        [Completion("", False, 0, "context")]]
