"""Loading policies, PRMs and reference models from a hub name or a local path.

One place decides dtype, device and tokenizer handling, so that ``--model Qwen/Qwen2.5-Math-7B``
and ``--model .cache/primekit/toy/policy-…`` take the same code path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from primekit.errors import InputError
from primekit.toy import policy_path

DTYPES = {"auto": "auto", "float32": torch.float32, "fp32": torch.float32,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
          "fp16": torch.float16}


def resolve_model_name(name_or_path: str | os.PathLike | None) -> str:
    """``None`` or ``"toy"`` means the embedded toy policy; anything else is passed through."""
    if name_or_path is None or str(name_or_path) == "toy":
        return str(policy_path())
    return str(name_or_path)


def _check_local(name_or_path: str, what: str) -> None:
    """A path-looking name that does not exist is a user typo, not a hub id to download."""
    looks_local = name_or_path.startswith((".", "/", "~")) or os.sep + os.sep in name_or_path
    if looks_local and not Path(name_or_path).expanduser().exists():
        raise InputError(f"{what} path does not exist", path=name_or_path)


def torch_dtype(name: str) -> torch.dtype | str:
    if name not in DTYPES:
        raise InputError(f"unknown dtype '{name}' (choose from {', '.join(DTYPES)})")
    return DTYPES[name]


def load_tokenizer(name_or_path: str | os.PathLike | None) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model. A ``tokenizer_config.json`` that names
    ``PreTrainedTokenizerFast`` is honoured literally: ``AutoTokenizer`` would swap a Qwen2
    byte-level pipeline in next to a Qwen2 config and silently drop spaces and newlines."""
    name = resolve_model_name(name_or_path)
    _check_local(name, "tokenizer")
    config_file = Path(name) / "tokenizer_config.json"
    if config_file.is_file():
        tokenizer_class = json.loads(config_file.read_text()).get("tokenizer_class")
        if tokenizer_class in {"PreTrainedTokenizerFast", "TokenizersBackend"}:
            return PreTrainedTokenizerFast.from_pretrained(name)
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as err:
        raise InputError(f"cannot load a tokenizer: {str(err).splitlines()[0]}", path=name) from None


def load_causal_lm(name_or_path: str | os.PathLike | None, dtype: str = "auto",
                   device: str | torch.device | None = None, trainable: bool = False) -> PreTrainedModel:
    """A causal LM in eval mode (or train mode with ``trainable``), on ``device`` if given."""
    name = resolve_model_name(name_or_path)
    _check_local(name, "model")
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype(dtype))
    except OSError as err:
        raise InputError(f"cannot load a model: {str(err).splitlines()[0]}", path=name) from None
    if device is not None:
        model.to(device)
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return model
