"""Qwen-shaped models for tests and benchmarks: Qwen2's real tokenizer and a 152k-column head.

The toy world (26 tokens, a tied 26-wide head) cannot show what depends on real shapes: byte-level
merges across step boundaries (``".\\n\\n"`` is one token, ``"\\n\\n"`` is 271), the chat markers
and which token ends a turn, an untied LM head that dominates a small model's compute and memory.
This module builds tiny random ``Qwen2ForCausalLM`` models with those shapes, offline, cached under
``PRIMEKIT_CACHE``; it is never a default of any command (the toy stays that), and it imports
nothing from primekit's apps.

* The tokenizer is Qwen2's byte-level BPE from the shared data (``tokenizers/qwen2`` under
  ``PRIMEKIT_DATA``), 151,643 ordinary tokens plus the special ones, with the conventions of
  Qwen2.5-Math-Instruct: the chat is ChatML, every turn ends with ``<|im_end|>`` and a newline, and
  a conversation without a system message gets Qwen2.5-Math's chain-of-thought system prompt — the
  ``qwen25-math-cot`` template of Qwen2.5-Math's evaluation (``evaluation/utils.py:141-146`` at
  a45202b), whose stop words name ``<|im_end|>`` and ``<|endoftext|>`` (``math_eval.py:234``).
  The instruct policy ends its answer with ``<|im_end|>`` (its EOS); ``<|endoftext|>`` pads, and
  generation stops at either (the model's ``generation_config``, as that evaluation's stop words
  say). A base-model policy (``eos="<|endoftext|>"``, the shared tokenizer's own setting) ends with
  ``<|endoftext|>``, which then also pads.
* The model: hidden size 64, 2 layers, 2 heads of 32 sharing 1 key/value head (vLLM's CPU
  attention has no kernel for heads of 16), an untied head of
  :data:`QWEN2_VOCAB` = 151,936 columns (Qwen2.5-Math-1.5B's; 7B's is 152,064, also accepted).
* :func:`model_path` with ``answer`` gives a *scripted* policy: after any prompt that opens the
  assistant turn it writes ``answer`` and then its EOS (or ``answer_end``), greedily and, in
  practice, at any temperature (the script's next token leads by ``SCRIPT_LOGIT`` logits). Its
  decoder layers write nothing into the residual stream, so the next token depends on the current
  one only, and the head maps each token of the script to the next one. Everything else stays random,
  so it trains like any model.

Use :func:`model_path` (a local folder: config, weights, tokenizer, like any hub model) or the
``qwen_shaped`` fixtures of the test suite.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from primekit.paths import cache_dir, data_dir

__all__ = ["END_OF_TEXT", "END_OF_TURN", "QWEN2_VOCAB", "QWEN25_MATH_CHAT_TEMPLATE",
           "QWEN25_MATH_SYSTEM_PROMPT", "build_model", "build_tokenizer", "model_path", "tokenizer_dir"]

TOKENIZER_SUBDIR = Path("tokenizers") / "qwen2"
QWEN2_VOCAB = 151_936
HEAD_WIDTHS = (151_936, 152_064)
END_OF_TURN = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
# Qwen2.5-Math's evaluation, template "qwen25-math-cot" (evaluation/utils.py:141-146 at a45202b).
QWEN25_MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN25_MATH_CHAT_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + QWEN25_MATH_SYSTEM_PROMPT.replace("\\", "\\\\") + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
SCRIPT_LOGIT = 40.0
FORMAT_VERSION = 4


def tokenizer_dir() -> Path:
    """The shared Qwen2 tokenizer folder (``tokenizers/qwen2`` under ``PRIMEKIT_DATA``)."""
    return data_dir() / TOKENIZER_SUBDIR


def build_tokenizer(eos: str = END_OF_TURN) -> PreTrainedTokenizerBase:
    """Qwen2's tokenizer with Qwen2.5-Math-Instruct's chat template, ``eos`` as its EOS
    (``<|im_end|>``: an instruct policy; ``<|endoftext|>``: a base one), ``<|endoftext|>`` as
    padding (left-padded, as generation wants) and no BOS. A missing tokenizer folder is a FileNotFoundError
    naming where it was looked for."""
    if eos not in (END_OF_TURN, END_OF_TEXT):
        raise ValueError(f"eos must be {END_OF_TURN} or {END_OF_TEXT}, got {eos!r}")
    folder = tokenizer_dir()
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}: no Qwen2 tokenizer (tokenizer.json); set PRIMEKIT_DATA to the "
                                "shared data folder")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.eos_token, tokenizer.pad_token = eos, END_OF_TEXT
    # Qwen2.5's tokenizers have no BOS token (the llama.cpp conversion names <|endoftext|>); code
    # that prepends a BOS when there is one (TRL's step-PRM layout) must not get one.
    tokenizer.bos_token = None
    tokenizer.padding_side = "left"
    tokenizer.chat_template = QWEN25_MATH_CHAT_TEMPLATE
    return tokenizer


def _config(tokenizer: PreTrainedTokenizerBase, vocab_size: int, initializer_range: float) -> Qwen2Config:
    return Qwen2Config(initializer_range=initializer_range,
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=128, max_position_embeddings=4096,
        tie_word_embeddings=False, bos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, dtype="float32")


def _script(model: Qwen2ForCausalLM, chain: list[int]) -> None:
    """Make ``model`` follow ``chain`` (token i -> token i+1), whatever came before: the decoder
    layers' output projections are zeroed (the final hidden state is the current token's embedding,
    normalised), the embeddings of the chain's tokens are set orthogonal, and each next token's
    head row points along the current token's hidden state, ``SCRIPT_LOGIT`` long; other head rows
    of the chain are orthogonal to it, the remaining rows keep their small random values."""
    sources = chain[:-1]
    if len(set(sources)) != len(sources):
        raise ValueError("a scripted answer repeats a token: the next token would be ambiguous")
    hidden = model.config.hidden_size
    if len(sources) > hidden:
        raise ValueError(f"a scripted answer holds at most {hidden - 1} tokens, got {len(sources) - 1}")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        basis = torch.linalg.qr(torch.randn(hidden, hidden)).Q[:, :len(sources)].T  # orthonormal rows
        embeddings = model.model.embed_tokens.weight
        head = model.lm_head.weight
        targets = set(chain[1:])
        for token in targets:
            head[token].zero_()
        for source, target, direction in zip(sources, chain[1:], basis):
            embeddings[source] = direction
            state = model.model.norm(direction)
            head[target] += SCRIPT_LOGIT * state / state.dot(state)


def build_model(tokenizer: PreTrainedTokenizerBase, vocab_size: int = QWEN2_VOCAB, seed: int = 0,
                answer: str | None = None, answer_end: str | None = None,
                initializer_range: float = 0.02) -> Qwen2ForCausalLM:
    """A random Qwen-shaped model (deterministic under ``seed``); with ``answer``, scripted to write
    it and then ``answer_end`` (default: the tokenizer's EOS) after the assistant turn opens (see
    the module docstring). ``initializer_range`` is the weights' standard deviation (Qwen2's 0.02);
    a larger one (e.g. 1.0) spreads the logits, so that two back ends' greedy choices are far from
    ties and can be compared token for token."""
    if vocab_size not in HEAD_WIDTHS:
        raise ValueError(f"vocab_size must be one of {HEAD_WIDTHS} (Qwen2.5's head widths), got {vocab_size}")
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(_config(tokenizer, vocab_size, initializer_range))
    if answer is not None:
        opener = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)[-1]
        end = tokenizer.convert_tokens_to_ids(answer_end or tokenizer.eos_token)
        _script(model, [opener, *tokenizer.encode(answer, add_special_tokens=False), end])
    stops = dict.fromkeys([tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TEXT)])
    model.generation_config.eos_token_id = list(stops) if len(stops) > 1 else tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = model.config.bos_token_id
    return model.eval()


def _key(*settings) -> str:
    tokenizer_hash = hashlib.sha256((tokenizer_dir() / "tokenizer.json").read_bytes()).hexdigest()
    described = json.dumps([FORMAT_VERSION, tokenizer_hash, QWEN25_MATH_CHAT_TEMPLATE, *settings])
    return hashlib.sha256(described.encode()).hexdigest()[:12]


def model_path(eos: str = END_OF_TURN, vocab_size: int = QWEN2_VOCAB, seed: int = 0,
               answer: str | None = None, answer_end: str | None = None,
               initializer_range: float = 0.02) -> Path:
    """A saved Qwen-shaped model (config, weights, tokenizer) under ``PRIMEKIT_CACHE``, built on
    first use (a few seconds) and written atomically: a staging folder renamed into place, under a
    file lock so that two processes build it once."""
    kind = "instruct" if eos == END_OF_TURN else "base"
    name = f"{kind}-{vocab_size}-{_key(eos, vocab_size, seed, answer, answer_end, initializer_range)}"
    target = cache_dir() / "qwen-shaped" / name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
        try:
            tokenizer = build_tokenizer(eos)
            model = build_model(tokenizer, vocab_size, seed, answer, answer_end, initializer_range)
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
