"""How a run spreads its models over the GPUs (DDP, FSDP2, FSDP2 with CPU offload), read from what
the run is launched with: a ``--parallelism`` name, an accelerate config file, or the environment
that ``accelerate launch`` / ``torchrun`` export to the running process."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from primekit.config import load_yaml, yaml_line_of
from primekit.errors import InputError

__all__ = ["BACKENDS", "Backend", "backend_from_accelerate_config", "backend_from_environment", "backend_from_name"]

#: ``--parallelism`` values: data parallel (full replicas), FSDP2, FSDP2 with parameters, gradients and
#: optimizer state offloaded to CPU memory (torch's ``CPUOffloadPolicy``).
BACKENDS = ("ddp", "fsdp2", "fsdp2_offload")


@dataclass(frozen=True)
class Backend:
    """How the models are spread over the GPUs (the run's parallelism)."""

    sharding: str                     # "ddp" (full replica per GPU) or "fsdp2"
    offload: bool                     # FSDP2 CPUOffloadPolicy: sharded states live in CPU memory
    gpus: int                         # training processes in all
    nodes: int = 1
    mixed_precision: str | None = None  # the launcher's setting ("no", "bf16", "fp16"); the recipe's bf16/fp16 win
    source: str = ""
    ram_efficient_loading: bool = False  # FSDP's cpu_ram_efficient_loading: only rank 0 reads the full weights

    @property
    def name(self) -> str:
        return "fsdp2_offload" if self.offload else self.sharding

    @property
    def shards(self) -> int:
        """Ways each model's weights, gradients and optimizer state are split."""
        return self.gpus if self.sharding == "fsdp2" else 1

    @property
    def gpus_per_node(self) -> int:
        return math.ceil(self.gpus / self.nodes)

    @property
    def label(self) -> str:
        return {"ddp": "DDP" if self.gpus > 1 else "one process", "fsdp2": "FSDP2",
                "fsdp2_offload": "FSDP2 + CPU offload"}[self.name]


def backend_from_name(name: str | None, gpus: int | None = None, nodes: int | None = None) -> Backend:
    """The :class:`Backend` of a ``--parallelism`` name (default ``ddp``) on ``gpus`` GPUs over ``nodes`` machines."""
    name = name or "ddp"
    if name not in BACKENDS:
        raise InputError(f"unknown parallelism '{name}' (choose from {', '.join(BACKENDS)})")
    return Backend(sharding="fsdp2" if name.startswith("fsdp2") else "ddp", offload=name == "fsdp2_offload",
                   gpus=gpus or 1, nodes=nodes or 1, source=f"--parallelism {name}")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def backend_from_accelerate_config(path: str, gpus: int | None = None, nodes: int | None = None) -> Backend:
    """The backend an ``accelerate launch --config_file`` run uses (DDP or FSDP2, ± offload).

    DeepSpeed and FSDP1 are not modelled and are refused in one line, naming the file and line.
    """
    data = load_yaml(path, what="accelerate config file")
    kind = str(data.get("distributed_type", "NO")).upper()
    fsdp = data.get("fsdp_config") or {}
    if kind in ("NO", "MULTI_GPU", "MULTI_CPU"):
        sharding, offload = "ddp", False
    elif kind == "FSDP":
        if str(fsdp.get("fsdp_version", 1)) != "2":
            raise InputError("only FSDP2 is planned; set fsdp_version: 2", path=path,
                             line=yaml_line_of(path, "fsdp_version"), field="fsdp_config.fsdp_version")
        sharding, offload = "fsdp2", _truthy(fsdp.get("fsdp_offload_params", False))
    else:
        raise InputError(f"distributed_type {kind} is not planned (DDP and FSDP2 are); plan with "
                         "recipes/accelerate/fsdp2_8gpu.yaml instead", path=path,
                         line=yaml_line_of(path, "distributed_type"), field="distributed_type")
    machines = int(data.get("num_machines", 1) or 1)
    processes = int(data.get("num_processes", 1) or 1)
    mixed = data.get("mixed_precision")
    return Backend(sharding=sharding, offload=offload, gpus=gpus or processes, nodes=nodes or machines,
                   mixed_precision=None if mixed is None else str(mixed).lower(), source=path,
                   ram_efficient_loading=sharding == "fsdp2" and _truthy(fsdp.get("fsdp_cpu_ram_efficient_loading", False)))


def backend_from_environment(env: Mapping[str, str]) -> Backend | None:
    """The backend of the running process, from what ``accelerate launch`` / ``torchrun`` export;
    None under DeepSpeed or FSDP1, which the plan does not model."""
    if _truthy(env.get("ACCELERATE_USE_DEEPSPEED", "")):
        return None
    gpus = int(env.get("WORLD_SIZE", "1"))
    per_node = int(env.get("LOCAL_WORLD_SIZE", str(gpus)))
    mixed = env.get("ACCELERATE_MIXED_PRECISION")
    if _truthy(env.get("ACCELERATE_USE_FSDP", "")):
        if env.get("FSDP_VERSION", "1") != "2":
            return None
        return Backend(sharding="fsdp2", offload=_truthy(env.get("FSDP_OFFLOAD_PARAMS", "")), gpus=gpus,
                       nodes=math.ceil(gpus / per_node), mixed_precision=mixed, source="environment")
    return Backend(sharding="ddp", offload=False, gpus=gpus, nodes=math.ceil(gpus / per_node),
                   mixed_precision=mixed, source="environment")
