"""``prime-rl config``: the configuration a ``prime-rl train`` run really runs with, before any weight loads.

A run's behaviour is set below its recipe too: by the defaults of TRL's ``GRPOConfig`` (after its
own ``__post_init__``), by what accelerate makes of the launcher's config (FSDP2's mixed-precision
policy), by the HF Trainer's optimizer groups and gradient-accumulation sync, and by how the RL
schedule counts steps. This module resolves all of it from the same arguments as ``prime-rl
train`` / ``prime-rl plan`` and flattens it to dotted keys:

- ``trl.<field>``: every field of the parsed ``PrimeConfig`` (TRL's, the HF Trainer's and
  primekit's own), as the trainer receives it;
- ``fsdp.<setting>``: the FSDP2 plugin as accelerate builds it from ``--accelerate_config``, with
  the mixed-precision policy PrimeTrainer installs (:func:`primekit.rl.config.fsdp_mixed_precision`);
- ``policy.*`` / ``prm.*``: gradient sync and sharding during accumulation, the optimizer's
  parameter groups (counted on a meta-device model built from config.json);
- ``schedule.*``: the RL schedule in RL steps (one generation batch and its policy updates).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

from primekit.config import help_text, load_yaml
from primekit.rl.config import fsdp_mixed_precision

__all__ = ["ConfigFormat", "effective_config", "render_effective_config", "meta_model"]

FORMATS = ("markdown", "json")


@dataclasses.dataclass
class ConfigFormat:
    """How ``prime-rl config`` prints the configuration."""

    format: str = dataclasses.field(default="markdown", metadata=help_text(
        f"output format: {', '.join(FORMATS)} (one object of dotted keys)"))

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}; got '{self.format}'")


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a configuration value (enums by value, dtypes and objects by name)."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    return str(value).removeprefix("torch.")


def meta_model(name_or_path: str) -> Any:
    """The causal LM of ``name_or_path``'s config.json on the meta device: names and shapes, no weights."""
    import torch  # heavy: only `prime-rl config` builds a model, on the meta device
    from transformers import (  # heavy: loaded on use, so importing this module stays fast
        AutoConfig,
        AutoModelForCausalLM,
    )

    config = AutoConfig.from_pretrained(name_or_path)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _fsdp_settings(accelerate_config: str | None, config: Any) -> dict[str, Any]:
    """The FSDP2 plugin as accelerate builds it from the launcher's config, with PrimeTrainer's policy."""
    data = load_yaml(accelerate_config, what="accelerate config file") if accelerate_config else {}
    fsdp = data.get("fsdp_config") or {}
    if str(data.get("distributed_type", "NO")).upper() != "FSDP":
        return {"fsdp.enabled": False}
    mixed = "bf16" if config.bf16 else "fp16" if config.fp16 else str(data.get("mixed_precision", "no")).lower()
    # accelerate's own FullyShardedDataParallelPlugin.set_mixed_precision: param and reduce in the compute dtype
    accelerate_default = {"bf16": "bfloat16", "fp16": "float16"}.get(mixed)
    policy = fsdp_mixed_precision(mixed, config.fsdp_reduce_dtype) if str(fsdp.get("fsdp_version", 1)) == "2" else None
    return {
        "fsdp.enabled": True,
        "fsdp.version": int(fsdp.get("fsdp_version", 1)),
        "fsdp.mixed_precision": mixed,
        "fsdp.param_dtype": _plain(policy.param_dtype) if policy else accelerate_default,
        "fsdp.reduce_dtype": _plain(policy.reduce_dtype) if policy else accelerate_default,
        "fsdp.reduce_dtype_of_accelerate_alone": accelerate_default,
        "fsdp.offload_params": bool(fsdp.get("fsdp_offload_params", False)),
        "fsdp.reshard_after_forward": fsdp.get("fsdp_reshard_after_forward", True),
        "fsdp.auto_wrap_policy": fsdp.get("fsdp_auto_wrap_policy"),
        "fsdp.state_dict_type": fsdp.get("fsdp_state_dict_type"),
        "fsdp.cpu_ram_efficient_loading": fsdp.get("fsdp_cpu_ram_efficient_loading"),
        "fsdp.activation_checkpointing": fsdp.get("fsdp_activation_checkpointing", False),
        "fsdp.num_machines": int(data.get("num_machines", 1) or 1),
        "fsdp.num_processes": int(data.get("num_processes", 1) or 1),
    }


def _optimizer_groups(model: Any, config: Any, *, prm: bool) -> dict[str, Any]:
    """Parameter counts of the optimizer's groups, as PrimeTrainer builds them."""
    from primekit.rl.trainer import decay_parameter_names  # TRL's GRPOTrainer: heavy, needed only here

    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if prm:  # PrimeTrainer's PRM optimizer: one AdamW group over every parameter
        return {"groups": [{"weight_decay": config.prm_weight_decay, "tensors": len(trained),
                            "parameters": sum(p.numel() for _, p in trained)}]}
    decay = set(decay_parameter_names(model, config.weight_decay_parameters))
    groups = []
    for weight_decay, chosen in ((config.weight_decay, [p for n, p in trained if n in decay]),
                                 (0.0, [p for n, p in trained if n not in decay])):
        if chosen:
            groups.append({"weight_decay": weight_decay, "tensors": len(chosen),
                           "parameters": sum(p.numel() for p in chosen)})
    return {"groups": groups}


def effective_config(run: Any, config: Any, backend: Any, accelerate_config: str | None,
                     on_gpu: bool) -> dict[str, Any]:
    """Every setting of the run, flattened to dotted keys (see the module docstring)."""
    result: dict[str, Any] = {f"run.{item.name}": _plain(getattr(run, item.name)) for item in dataclasses.fields(run)}
    for item in dataclasses.fields(config):
        value = _plain(getattr(config, item.name))
        if item.name == "accelerator_config":  # one key per setting: gradient sync is one of them
            result.update({f"trl.accelerator_config.{key}": inner for key, inner in value.items()})
        else:
            result[f"trl.{item.name}"] = value
    if on_gpu:
        result["trl.use_cpu"] = False  # parsed with use_cpu on a machine without a GPU; the run has one
    result.update(_fsdp_settings(accelerate_config, config))
    sharded = backend.sharding == "fsdp2"
    sync = bool(config.accelerator_config.gradient_accumulation_kwargs.get("sync_each_batch", False))
    accumulates = config.gradient_accumulation_steps > 1
    result["policy.gradient_sync"] = "every micro-batch" if sync or not accumulates else "last micro-batch"
    result["policy.gradients_sharded_during_accumulation"] = sharded and (sync or not accumulates)
    result["policy.weight_decay_parameters"] = config.weight_decay_parameters
    policy_model = meta_model(run.model)
    result["policy.parameters"] = sum(p.numel() for p in policy_model.parameters())
    result["policy.optimizer"] = _optimizer_groups(policy_model, config, prm=False)
    trains_prm = config.uses_prm and config.prm_update != "none"
    prm_micro = config.prm_micro_batch_size or config.per_device_train_batch_size
    prm_mini = config.prm_mini_batch_size or config.trained_batch_size
    prm_accumulates = prm_mini // backend.gpus > prm_micro
    result["prm.trained"] = trains_prm
    if trains_prm:
        result["prm.gradient_sync"] = ("every micro-batch" if config.sync_gradients_each_micro_batch or not prm_accumulates
                                       else "last micro-batch")
        result["prm.gradients_sharded_during_accumulation"] = sharded and (
            config.sync_gradients_each_micro_batch or not prm_accumulates)
        result["prm.optimizer"] = _optimizer_groups(meta_model(config.prm or run.model), config, prm=True)
    else:
        result["prm.gradients_sharded_during_accumulation"] = None
    steps = config.optimizer_steps_per_rl_step
    result["schedule.processes"] = backend.gpus
    result["schedule.nodes"] = backend.nodes
    result["schedule.responses_per_rl_step"] = config.trained_batch_size
    result["schedule.prompts_per_sampling_round"] = config.generation_batch_size // config.num_generations
    result["schedule.micro_batches_per_optimizer_step"] = config.gradient_accumulation_steps
    result["schedule.optimizer_steps_per_rl_step"] = steps
    result["schedule.prm_optimizer_steps_per_rl_step"] = config.trained_batch_size // prm_mini if trains_prm else 0
    saves = getattr(config.save_strategy, "value", config.save_strategy) == "steps"
    result["schedule.checkpoint_every_rl_steps"] = (config.save_steps / steps if saves else None)
    result["schedule.epoch"] = config.epoch_mode
    return result


def render_effective_config(values: Mapping[str, Any], title: str, output_format: str) -> str:
    """JSON (one object) or a Markdown table of ``values``."""
    if output_format == "json":
        return json.dumps(values, indent=1, sort_keys=False)
    lines = [f"# {title}", "", "| key | value |", "|---|---|"]
    for key, value in values.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        lines.append(f"| {key} | {shown.replace('|', '/')} |")
    return "\n".join(lines)
