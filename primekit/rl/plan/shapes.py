"""The numbers of a decoder-only LM that its memory depends on, read from its ``config.json``
(local folder or hub name) without loading any weight."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from primekit.errors import InputError

__all__ = ["DTYPE_BYTES", "ModelShape", "read_model_shape"]

#: Bytes per element of the dtype names a config.json or ``model_init_kwargs`` may give.
DTYPE_BYTES = {"float32": 4, "fp32": 4, "float": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2,
                "half": 2}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only LM that its memory depends on (no weights needed)."""

    name: str
    parameters: int          # all parameters, a tied embedding counted once
    layer_parameters: int    # one decoder layer
    head_parameters: int     # the LM head's weight (vocab x hidden), shared with the embedding when tied
    tied_embeddings: bool
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    config_dtype_bytes: int  # bytes of the dtype config.json names (what dtype "auto" loads)

    @property
    def attention_width(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_kv_heads * self.head_dim


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def read_model_shape(name_or_path: str) -> ModelShape:
    """Shape of a causal LM from its ``config.json`` (local folder or hub name), without weights.

    The parameters are counted on a model built on the meta device (``AutoModelForCausalLM.
    from_config`` under ``torch.device("meta")``), so tied embeddings, biases and norms are counted
    exactly as transformers builds them. A hub name is read with ``AutoConfig`` (network or cache).
    """
    import torch  # heavy: imported only when a shape is read
    from transformers import (  # heavy: loaded on use, so importing this module stays fast
        AutoConfig,
        AutoModelForCausalLM,
    )

    if _looks_local(name_or_path):
        folder = Path(name_or_path).expanduser()
        if not folder.exists():
            raise InputError("model path does not exist", path=name_or_path)
        if not (folder / "config.json").is_file():
            raise InputError("no config.json here (a model folder saved with save_pretrained has one)",
                             path=folder / "config.json" if folder.is_dir() else folder)
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the model's config.json ({str(err).splitlines()[0][:200]}); a hub "
                         "name needs the network or a cached copy", path=name_or_path) from None
    text = config.get_text_config()
    where = name_or_path if not _looks_local(name_or_path) else str(Path(name_or_path) / "config.json")

    def number(key: str, default: int | None = None) -> int:
        value = getattr(text, key, None)
        if value is None:
            value = default
        if not isinstance(value, int) or value < 1:
            raise InputError("missing or not a positive integer", path=where, field=key)
        return value

    hidden, heads = number("hidden_size"), number("num_attention_heads")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    layers = model.get_decoder().layers
    head = model.get_output_embeddings().weight
    tied = head is model.get_input_embeddings().weight
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    return ModelShape(
        name=name_or_path, parameters=sum(p.numel() for p in model.parameters()),
        layer_parameters=sum(p.numel() for p in layers[0].parameters()), head_parameters=head.numel(),
        tied_embeddings=tied, num_layers=number("num_hidden_layers"), hidden_size=hidden,
        intermediate_size=number("intermediate_size"), num_heads=heads,
        num_kv_heads=number("num_key_value_heads", heads), head_dim=number("head_dim", hidden // heads),
        vocab_size=number("vocab_size"), config_dtype_bytes=DTYPE_BYTES.get(str(dtype).removeprefix("torch."), 4))

