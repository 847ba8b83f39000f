"""The tiny toy model: the same ``Qwen2ForCausalLM`` class as Qwen2.5-Math, at 0.5M parameters."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from primekit.toy.tokenizer import VOCAB, build_tokenizer


def tiny_qwen2_config(vocab_size: int = len(VOCAB)) -> Qwen2Config:
    tokenizer = build_tokenizer()
    return Qwen2Config(
        vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=512, max_position_embeddings=256,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        dtype="float32")


def random_model(seed: int = 0) -> Qwen2ForCausalLM:
    """An untrained tiny Qwen2 (deterministic under ``seed``): enough for shape and math tests."""
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_qwen2_config())
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id
    return model
