"""Memory plan of a ``prime-rl train`` run: per GPU, from the models' ``config.json``, before any weight loads.

PRIME holds up to four causal LMs on every GPU: the policy (trained), the implicit PRM (trained,
or frozen with ``prm_update: none``, absent with ``process_reward_coef: 0``), the PRM's frozen
reference and TRL's frozen KL reference (``beta > 0``; one model when the trainer shares it with
the PRM reference). This module adds up what each of them costs on one GPU under the chosen
backend (DDP, FSDP2, FSDP2 with CPU offload) and precision, at the recipe's lengths and
micro-batches, and says whether the run fits and what to change when it does not.

Every number is a small pure function of the architecture (:class:`ModelShape`), the dtypes
(:class:`Precision`) and the batch shape; each function's docstring says where its formula comes
from. The run is split into phases, because not everything is alive at once:

- ``generation``: TRL samples the batch (transformers ``generate`` with its KV cache, or vLLM's
  ``gpu_memory_utilization`` share when colocated);
- ``scoring``: the frozen forwards (KL / PRM reference log-probs, PRM scores, old log-probs);
- ``PRM update`` / ``policy update``: forward + backward of one micro-batch of a trained model
  (its gradients, activations, the LM-head buffers);
- ``PRM step`` / ``policy step``: that model's optimizer step (its gradients + the optimizer's
  scratch). The two models' gradients never coexist: each is freed after its own step.

Weights and AdamW moments of every model stay resident in all phases (on the CPU under offload).
The plan's total is the largest phase; the verdict compares it with the GPU size.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from primekit.config import _yaml_line_of, help_text
from primekit.errors import InputError
from primekit.rl.gpu_terms import USABLE_GPU_FRACTION, VLLM_ASLEEP_BYTES, fused_head_gradient_bytes, vllm_asleep_bytes

__all__ = [
    "BACKENDS", "Backend", "MemoryItem", "MemoryPlan", "ModelShape", "PlanArguments", "PlannedModel", "Precision",
    "Workload", "backend_from_accelerate_config", "backend_from_environment", "backend_from_name",
    "build_plan", "check_before_training", "decoder_layer_activation_bytes", "kv_cache_bytes", "plan_backend",
    "plan_run", "read_model_shape", "read_shapes", "render_plan",
]

GIB = 2**30
#: ``--backend`` values: data parallel (full replicas), FSDP2, FSDP2 with parameters, gradients and
#: optimizer state offloaded to CPU memory (torch's ``CPUOffloadPolicy``).
BACKENDS = ("ddp", "fsdp2", "fsdp2_offload")
#: Reserved on every GPU for the CUDA context, cuBLAS workspaces and NCCL buffers (about 0.5-1 GiB
#: on an A100 with torch 2.x); not counted for CPU processes.
CUDA_RUNTIME_BYTES = 1 * GIB
PHASES = ("generation", "scoring", "PRM update", "PRM step", "policy update", "policy step")
RESIDENT = PHASES
_DTYPE_BYTES = {"float32": 4, "fp32": 4, "float": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2,
                "half": 2}


# ----------------------------------------------------------------------------------------------
# options of `prime-rl plan`

@dataclass
class PlanArguments:
    """Where the run goes: the GPUs, their memory and the distributed backend."""

    gpus: int | None = field(default=None, metadata=help_text(
        "GPUs in all (one training process each); default: num_processes of --accelerate_config, else 1"))
    gpu_memory_gb: float = field(default=80.0, metadata=help_text(
        "nominal memory of one GPU in GiB (an A100-80GB has 80)"))
    gpu_usable_fraction: float = field(default=USABLE_GPU_FRACTION, metadata=help_text(
        "share of --gpu_memory_gb that CUDA exposes to PyTorch and vLLM (an 80 GB A100 or H100 reports about "
        "79.2 GiB as its total); the verdict and vLLM's share use the usable memory"))
    vllm_asleep_gb: float = field(default=VLLM_ASLEEP_BYTES / GIB, metadata=help_text(
        "GiB a colocated vLLM keeps on the GPU while sleep mode frees the rest (its CUDA graphs: TRL does "
        "not set enforce_eager); charged in every phase but generation"))
    nodes: int | None = field(default=None, metadata=help_text(
        "machines the GPUs are spread over (for the CPU memory per node under offload); default: "
        "num_machines of --accelerate_config, else 1"))
    backend: str | None = field(default=None, metadata=help_text(
        f"distributed backend: {', '.join(BACKENDS)} (or give --accelerate_config); default: ddp"))
    accelerate_config: str | None = field(default=None, metadata=help_text(
        "accelerate config file the run is launched with; its distributed_type, fsdp_version, "
        "fsdp_offload_params, mixed_precision, num_processes and num_machines set the backend"))
    prompt_length: int | None = field(default=None, metadata=help_text(
        "longest prompt in tokens; default: the recipe's prompt cap, else the longest of the first "
        "1000 training prompts"))
    cpu_memory_gb: float | None = field(default=None, metadata=help_text(
        "CPU memory of one machine in GiB: the plan's CPU memory per node (offloaded states, rank 0's "
        "full-model staging, per-process overhead) gets a verdict against it"))

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got '{self.backend}'")
        if self.backend is not None and self.accelerate_config is not None:
            raise ValueError("give --backend or --accelerate_config, not both")
        if not self.gpu_memory_gb > 0:
            raise ValueError(f"gpu_memory_gb must be > 0; got {self.gpu_memory_gb}")
        if not 0 < self.gpu_usable_fraction <= 1:
            raise ValueError(f"gpu_usable_fraction must be in (0, 1]; got {self.gpu_usable_fraction}")
        if not self.vllm_asleep_gb >= 0:
            raise ValueError(f"vllm_asleep_gb must be >= 0; got {self.vllm_asleep_gb}")
        if self.cpu_memory_gb is not None and not self.cpu_memory_gb > 0:
            raise ValueError(f"cpu_memory_gb must be > 0; got {self.cpu_memory_gb}")
        for name in ("gpus", "nodes", "prompt_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")


# ----------------------------------------------------------------------------------------------
# the models, from config.json

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
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

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
        vocab_size=number("vocab_size"), config_dtype_bytes=_DTYPE_BYTES.get(str(dtype).removeprefix("torch."), 4))


# ----------------------------------------------------------------------------------------------
# the backend

@dataclass(frozen=True)
class Backend:
    """How the models are spread over the GPUs."""

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
    name = name or "ddp"
    if name not in BACKENDS:
        raise InputError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")
    return Backend(sharding="fsdp2" if name.startswith("fsdp2") else "ddp", offload=name == "fsdp2_offload",
                   gpus=gpus or 1, nodes=nodes or 1, source=f"--backend {name}")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def backend_from_accelerate_config(path: str, gpus: int | None = None, nodes: int | None = None) -> Backend:
    """The backend an ``accelerate launch --config_file`` run uses (DDP or FSDP2, ± offload).

    DeepSpeed and FSDP1 are not modelled and are refused in one line, naming the file and line.
    """
    if not Path(path).is_file():
        raise InputError("accelerate config file not found", path=path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InputError(f"invalid YAML ({getattr(err, 'problem', err)})", path=path) from None
    if not isinstance(data, dict):
        raise InputError("an accelerate config holds a YAML mapping", path=path)
    kind = str(data.get("distributed_type", "NO")).upper()
    fsdp = data.get("fsdp_config") or {}
    if kind in ("NO", "MULTI_GPU", "MULTI_CPU"):
        sharding, offload = "ddp", False
    elif kind == "FSDP":
        if str(fsdp.get("fsdp_version", 1)) != "2":
            raise InputError("only FSDP2 is planned; set fsdp_version: 2", path=path,
                             line=_yaml_line_of(path, "fsdp_version"), field="fsdp_config.fsdp_version")
        sharding, offload = "fsdp2", _truthy(fsdp.get("fsdp_offload_params", False))
    else:
        raise InputError(f"distributed_type {kind} is not planned (DDP and FSDP2 are); plan with "
                         "recipes/accelerate/fsdp2_8gpu.yaml instead", path=path,
                         line=_yaml_line_of(path, "distributed_type"), field="distributed_type")
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


# ----------------------------------------------------------------------------------------------
# precision

@dataclass(frozen=True)
class Precision:
    """Bytes per element of what each model holds and computes.

    ``trained``: storage of a trained model's parameters, which are also its master weights, its
    gradients' and its AdamW moments' dtype (torch's AdamW keeps its state in the parameter's dtype).
    ``frozen``: storage of a frozen model. ``residual``: dtype of the hidden states between layers
    (the dtype of the parameters the forward sees). ``compute``: dtype of matmul outputs (bf16 under
    autocast or FSDP2's ``MixedPrecisionPolicy``). ``autocast_copies``: fp32 parameters run under
    autocast, which caches a compute-dtype copy of every weight for the forward + backward.
    """

    trained: int
    frozen: int
    residual: int
    compute: int
    autocast_copies: bool
    label: str


def _load_bytes(model_init_kwargs: Mapping[str, Any] | None, shape: ModelShape) -> int:
    """Storage of a model loaded with the recipe's ``model_init_kwargs``: TRL's
    ``create_model_from_path`` defaults to float32; ``"auto"`` takes config.json's dtype."""
    dtype = str((model_init_kwargs or {}).get("dtype", "float32")).removeprefix("torch.")
    if dtype == "auto":
        return shape.config_dtype_bytes
    if dtype not in _DTYPE_BYTES:
        raise InputError(f"unknown dtype '{dtype}' in model_init_kwargs", field="model_init_kwargs")
    return _DTYPE_BYTES[dtype]


def precision_for(config: Any, backend: Backend, shape: ModelShape) -> Precision:
    """What transformers' Trainer, accelerate and torch do with the recipe's dtype settings.

    Mixed precision is the recipe's ``bf16`` / ``fp16`` (TrainingArguments ignores the launcher's
    setting when either is set), else the launcher's ``mixed_precision``. Under FSDP2 with mixed
    precision, accelerate's ``fsdp2_prepare_model`` upcasts trainable parameters to fp32 (master
    weights) and ``MixedPrecisionPolicy(param_dtype=bf16)`` gathers bf16 copies per layer, so
    everything the forward sees is bf16. Under DDP the loaded dtype is kept and autocast computes in
    bf16 (the residual stream stays in the parameters' dtype).
    """
    mixed = "bf16" if config.bf16 else "fp16" if config.fp16 else (backend.mixed_precision or "no")
    load = _load_bytes(config.model_init_kwargs, shape)
    if backend.sharding == "fsdp2" and mixed != "no":
        return Precision(trained=4, frozen=load, residual=2, compute=2, autocast_copies=False,
                         label=f"{mixed} compute, fp32 master weights (FSDP2 mixed precision)")
    compute = 2 if mixed != "no" else load
    master = "fp32 master weights" if load == 4 else f"{mixed if load == 2 else 'fp32'} weights, no fp32 master copy"
    label = f"{mixed} autocast, {master}" if mixed != "no" else f"{'fp32' if load == 4 else 'bf16/fp16'} throughout"
    return Precision(trained=load, frozen=load, residual=load, compute=compute,
                     autocast_copies=compute < load, label=label)


# ----------------------------------------------------------------------------------------------
# formulas (bytes), each a pure function

def decoder_layer_activation_bytes(shape: ModelShape, tokens: int, precision: Precision) -> float:
    """What autograd saves for backward in one Qwen2 / Llama decoder layer, over ``tokens`` tokens.

    Counted tensor by tensor from transformers' ``Qwen2DecoderLayer`` (modeling_qwen2.py,
    transformers 5.24) and checked against ``torch.autograd.graph.saved_tensors_hooks`` on a real
    layer in fp32, under bf16 autocast and in bf16 (tests/test_rl_plan.py). Per token, with r / c
    the residual / compute bytes, h hidden, a = heads x head_dim, kv = kv_heads x head_dim, i MLP width:

    - each of the two RMSNorms: its fp32 input 4h (the residual itself when that is fp32, else a
      copy), rsqrt 4, the normalised value in the residual dtype r*h; its product with the norm
      weight is saved by the next linear layers: once (r*h), or under autocast as one compute-dtype
      cast per consuming linear (q, k, v: 3; gate, up: 2), c*h each;
    - attention (SDPA's flash / memory-efficient kernels: no heads x seq x seq matrix): rotated q
      c*a, rotated k c*kv, v c*kv, the output c*a (the o_proj input shares its storage) and the fp32
      log-sum-exp 4 per head;
    - SwiGLU MLP: the gate output, its SiLU, the up output and their product, 4*c*i.
    """
    h, r, c = shape.hidden_size, precision.residual, precision.compute
    norms = 2 * (4 * h + 4 + r * h) + (5 * c * h if precision.autocast_copies else 2 * r * h)
    attention = c * (2 * shape.attention_width + 2 * shape.kv_width) + 4 * shape.num_heads
    mlp = 4 * c * shape.intermediate_size
    return tokens * (norms + attention + mlp)


def checkpointed_layer_bytes(shape: ModelShape, tokens: int, precision: Precision) -> float:
    """With gradient checkpointing (``torch.utils.checkpoint`` around each decoder layer, as
    transformers' ``gradient_checkpointing_enable`` does) a layer keeps only its input: r*h per
    token (measured as exactly that in tests/test_rl_plan.py)."""
    return tokens * precision.residual * shape.hidden_size


def outside_layers_activation_bytes(shape: ModelShape, rows: int, sequence: int, precision: Precision) -> float:
    """Saved tensors outside the decoder layers: the token ids (int64), the final RMSNorm
    (4h + 4 + r*h per token), RoPE's cos / sin tables (per position) and the 4-D boolean attention
    mask that transformers' SDPA path builds for a padded batch (rows x seq x seq bytes, shared by
    all layers)."""
    tokens = rows * sequence
    h, r = shape.hidden_size, precision.residual
    return tokens * (8 + 4 * h + 4 + r * h) + sequence * 2 * shape.head_dim * r + rows * sequence**2


def backward_working_bytes(shape: ModelShape, tokens: int, precision: Precision) -> float:
    """Gradient buffers in flight inside one layer's backward: two MLP-wide ones in the compute
    dtype and two fp32 hidden-wide ones per token. Calibrated on CPU (fp32, h = 512, i = 2816):
    20-32 kB per token measured beyond the saved activations, 26.6 kB by this formula."""
    return tokens * (2 * precision.compute * shape.intermediate_size + 2 * 4 * shape.hidden_size)


def inference_working_bytes(shape: ModelShape, tokens: int, precision: Precision) -> float:
    """Live tensors of a forward without autograd: at most the residual, the norm's fp32 copies and
    three MLP-wide tensors (SiLU(gate), up, their product) of one layer at a time."""
    h, r, c = shape.hidden_size, precision.residual, precision.compute
    return tokens * (2 * r * h + 8 * h + 3 * c * shape.intermediate_size)


def lm_head_bytes(shape: ModelShape, scored_tokens: int, precision: Precision, *, trained: bool,
                  fp32_head: bool, fsdp: bool = False) -> float:
    """TRL's fused LM head (``add_fused_lm_head``: log-probs without the vocab x tokens logits).

    It keeps a copy of the scored hidden states (fp32 with ``cast_lm_head_to_fp32``), projects them
    in tiles of at most TOKEN_CHUNK_SIZE tokens x _CHUNKED_LOGPROB_CHUNK_SIZE vocabulary entries
    (trl/kernels/chunked_logprob.py), and its backward holds the fp32 gradients and their casts
    (:func:`~primekit.rl.gpu_terms.fused_head_gradient_bytes`). The weight it sees: under FSDP2
    (``fsdp``) the gathered one in the parameters' forward dtype (mixed precision gathers bf16 even
    for a head TRL cast to fp32); otherwise the stored head, fp32 with ``cast_lm_head_to_fp32``.
    """
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    h = shape.hidden_size
    head_bytes = 4 if fp32_head else precision.compute
    hidden_bytes = 4 if fp32_head else precision.residual
    weight_bytes = precision.residual if fsdp else 4 if fp32_head else precision.trained
    hidden_copy = scored_tokens * h * hidden_bytes
    tile = min(scored_tokens, TOKEN_CHUNK_SIZE) * min(shape.vocab_size, _CHUNKED_LOGPROB_CHUNK_SIZE) * head_bytes
    per_token = scored_tokens * (8 + 4 * 3)  # targets (int64), log-probs, log-normaliser, entropy (fp32)
    backward = fused_head_gradient_bytes(shape.head_parameters, scored_tokens, h, hidden_bytes=hidden_bytes,
                                         weight_bytes=weight_bytes, trained=trained, weight_cast_counted=fsdp)
    return hidden_copy + tile + per_token + backward


def kv_cache_bytes(shape: ModelShape, rows: int, sequence: int, precision: Precision) -> float:
    """transformers' ``DynamicCache`` for ``rows`` sequences of ``sequence`` tokens: per layer and
    token, the rotated keys (kv_heads x head_dim, in the residual dtype: RoPE multiplies by cos / sin
    cast to the hidden states' dtype) and the values (compute dtype)."""
    return rows * sequence * shape.num_layers * shape.kv_width * (precision.residual + precision.compute)


def vllm_minimum_bytes(shape: ModelShape, sequence: int, tensor_parallel: int = 1) -> float:
    """A lower bound on the GPU memory vLLM's colocated engine needs on one GPU: its share of the
    weights in the checkpoint's dtype, the KV cache of one sequence of the longest length (2 B per
    key and value element), and the forward it profiles at start-up (a batch of that many tokens,
    counted like :func:`inference_working_bytes` in bf16, plus the sampler's fp32 logits of it)."""
    bf16 = Precision(trained=2, frozen=2, residual=2, compute=2, autocast_copies=False, label="bf16")
    weights = shape.parameters * shape.config_dtype_bytes / tensor_parallel
    kv = sequence * shape.num_layers * shape.kv_width * 2 * 2 / tensor_parallel
    profile = inference_working_bytes(shape, sequence, bf16) / tensor_parallel + sequence * shape.vocab_size * 4 / tensor_parallel
    return weights + kv + profile


def adamw_state_bytes(parameters: float, state_bytes: int) -> float:
    """AdamW's two moments (exp_avg, exp_avg_sq), in the parameters' dtype as torch keeps them."""
    return 2 * parameters * state_bytes


# ----------------------------------------------------------------------------------------------
# the run

@dataclass(frozen=True)
class PlannedModel:
    """One model of the run and how the trainer uses it."""

    role: str             # "policy", "PRM", "PRM reference", "KL reference"
    shape: ModelShape
    trained: bool
    rows: int             # rows of one forward (micro-batch)
    checkpointing: bool   # gradient checkpointing in its backward
    accumulates: bool     # several micro-batches per optimizer step: gradients live through the next backward
    fused_optimizer: bool  # torch's fused AdamW (no scratch); else foreach AdamW on a GPU
    #: bytes per parameter of the unsharded gradient FSDP2 accumulates when gradient sync waits for the
    #: last micro-batch (sync_gradients_each_micro_batch false); 0 when it reduce-scatters every one
    unsharded_gradient_bytes: int = 0


@dataclass(frozen=True)
class Workload:
    """Per-GPU batch shape of the run."""

    prompt_tokens: int
    completion_tokens: int
    generation_rows: int        # sequences sampled per GPU at once
    use_vllm: bool
    vllm_colocate: bool
    vllm_share: float           # vllm_gpu_memory_utilization
    vllm_sleeps: bool           # vllm_enable_sleep_mode: its memory is released outside generation
    fp32_head: bool             # cast_lm_head_to_fp32
    on_gpu: bool                # CUDA devices (else CPU processes)
    vllm_tensor_parallel: int = 1  # vllm_tensor_parallel_size
    vllm_asleep: float = VLLM_ASLEEP_BYTES  # what the sleeping engine keeps (its CUDA graphs; gpu_terms)

    @property
    def sequence(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class MemoryItem:
    """One thing in memory: its size on one GPU (and in CPU memory per process, when offloaded)."""

    model: str
    kind: str
    device: float
    phases: tuple[str, ...]
    detail: str
    advice: str = ""
    host: float = 0.0


@dataclass(frozen=True)
class MemoryPlan:
    """Every item of a run, the phases it lives in, and the verdict against one GPU's memory."""

    items: tuple[MemoryItem, ...]
    models: tuple[PlannedModel, ...]
    backend: Backend
    precision: Precision
    workload: Workload
    capacity: float               # bytes of one GPU
    notes: tuple[str, ...] = ()

    def phase_total(self, phase: str) -> float:
        return sum(item.device for item in self.items if phase in item.phases)

    @property
    def phases(self) -> tuple[str, ...]:
        return tuple(phase for phase in PHASES if any(phase in item.phases and item.phases != RESIDENT
                                                      for item in self.items))

    @property
    def peak_phase(self) -> str:
        return max(self.phases or PHASES[:1], key=self.phase_total)

    @property
    def peak(self) -> float:
        return self.phase_total(self.peak_phase)

    @property
    def vllm_minimum(self) -> float:
        """Least GPU memory vLLM's colocated engine needs (0 without one): :func:`vllm_minimum_bytes`."""
        if not (self.workload.use_vllm and self.workload.vllm_colocate and self.workload.on_gpu):
            return 0.0
        return vllm_minimum_bytes(self.models[0].shape, self.workload.sequence, self.workload.vllm_tensor_parallel)

    @property
    def vllm_share_too_small(self) -> bool:
        return self.workload.vllm_share * self.capacity < self.vllm_minimum

    @property
    def fits(self) -> bool:
        return self.peak <= self.capacity and not self.vllm_share_too_small

    @property
    def margin(self) -> float:
        """Free fraction of the GPU at the peak (negative when it does not fit)."""
        return 1 - self.peak / self.capacity

    @property
    def largest(self) -> MemoryItem:
        """The biggest item of the peak phase that a setting can shrink (its advice says which)."""
        live = [item for item in self.items if self.peak_phase in item.phases]
        return max([item for item in live if item.advice] or live, key=lambda item: item.device)

    @property
    def host_per_node(self) -> float:
        """CPU memory the offloaded states take on one machine (all its processes)."""
        return sum(item.host for item in self.items) * self.backend.gpus_per_node

    def summary(self) -> str:
        """One line: the peak against the GPU, the verdict and the largest item to change."""
        unit = "GPU" if self.workload.on_gpu else "process"
        verdict = (f"fits (margin {self.margin:.0%})" if self.fits
                   else f"does not fit ({_gib(self.peak - self.capacity)} GiB over)" if self.peak > self.capacity
                   else f"does not fit: vLLM's share {_gib(self.workload.vllm_share * self.capacity)} GiB is below the "
                        f"{_gib(self.vllm_minimum)} GiB it needs at least (vllm_gpu_memory_utilization >= "
                        f"{math.ceil(100 * self.vllm_minimum / self.capacity) / 100:.2f}, or vllm_tensor_parallel_size > "
                        f"{self.workload.vllm_tensor_parallel})")
        largest = self.largest
        line = f"peak {_gib(self.peak)} GiB per {unit} ({self.peak_phase}) of {_gib(self.capacity)} GiB: {verdict}"
        if self.vllm_share_too_small and self.peak <= self.capacity:
            return line
        return f"{line}; largest item: {largest.model} {largest.kind} {_gib(largest.device)} GiB ({largest.advice})"


def _count(parameters: int) -> str:
    return f"{parameters / 1e9:.2f}B" if parameters >= 1e9 else f"{parameters / 1e6:.1f}M"


def _gib(value: float) -> str:
    return f"{value / GIB:.2f}" if abs(value) < 10 * GIB else f"{value / GIB:.1f}"


def model_roles(config: Any, policy: str, shapes: Mapping[str, ModelShape], gpus: int) -> list[PlannedModel]:
    """The models ``PrimeTrainer`` holds, as it decides them (primekit/rl/trainer.py ``_load_prm``):
    TRL's KL reference exists when ``beta != 0``; the PRM reference *is* that model when it names the
    policy's weights and sampling runs at temperature 1, else it is loaded on its own."""
    policy_rows = config.per_device_train_batch_size
    prm_rows = config.prm_micro_batch_size or policy_rows
    deferred = 0 if getattr(config, "sync_gradients_each_micro_batch", True) else (
        4 if getattr(config, "fsdp_reduce_dtype", "float32") == "float32" or not (config.bf16 or config.fp16) else 2)
    accumulates = config.gradient_accumulation_steps > 1
    models = [PlannedModel("policy", shapes[policy], True, policy_rows, bool(config.gradient_checkpointing),
                           accumulates, "fused" in str(config.optim), deferred if accumulates else 0)]
    kl_reference = config.beta != 0
    if kl_reference:
        models.append(PlannedModel("KL reference", shapes[policy], False, policy_rows, False, False, True))
    if config.uses_prm:
        trained = config.prm_update != "none"
        prm_id = config.prm or policy
        trained_per_process = config.per_device_train_batch_size * config.steps_per_generation
        per_process = config.prm_mini_batch_size // gpus if config.prm_mini_batch_size else trained_per_process
        models.append(PlannedModel("PRM", shapes[prm_id], trained, prm_rows,
                                   trained and bool(config.gradient_checkpointing),
                                   per_process > prm_rows, False, deferred if trained and per_process > prm_rows else 0))
        ref_id = config.prm_ref or policy
        if not (kl_reference and ref_id == policy and config.temperature == 1.0):
            models.append(PlannedModel("PRM reference", shapes[ref_id], False, prm_rows, False, False, True))
    return models


def _trained_items(model: PlannedModel, backend: Backend, precision: Precision, workload: Workload,
                   phase: str) -> list[MemoryItem]:
    shape, role, shards = model.shape, model.role, backend.shards
    state = precision.trained
    share = f"1/{shards} shard" if shards > 1 else "full copy"
    offloaded = backend.offload

    def placed(kind: str, size: float, phases: tuple[str, ...], detail: str, advice: str) -> MemoryItem:
        if offloaded:
            return MemoryItem(role, kind, 0.0, phases, detail + ", in CPU memory", "", host=size)
        return MemoryItem(role, kind, size, phases, detail, advice)

    shard_advice = ("shard it: --backend fsdp2 (recipes/accelerate/fsdp2_8gpu.yaml)" if backend.sharding == "ddp"
                    else "offload it: --backend fsdp2_offload (recipes/accelerate/fsdp2_offload_8gpu.yaml) "
                         "or more GPUs")
    master = ", the fp32 master weights" if state == 4 and precision.compute < 4 else ""
    items = [
        placed("weights", shape.parameters * state / shards, RESIDENT,
               f"{_count(shape.parameters)} params x {state} B, {share}{master}", shard_advice),
        placed("optimizer", adamw_state_bytes(shape.parameters, state) / shards, RESIDENT,
               f"AdamW exp_avg + exp_avg_sq, 2 x {state} B per param, {share}", shard_advice),
    ]
    gradients = shape.parameters * state / shards
    step = phase.replace("update", "step")
    items.append(placed("gradients", gradients, (phase, step),
                        f"{state} B per param, {share}, freed after each optimizer step", shard_advice))
    if backend.sharding == "ddp" and backend.gpus > 1:
        items.append(MemoryItem(role, "DDP buckets", shape.parameters * state, RESIDENT,
                                "torch DDP's flat all-reduce buckets beside the gradients "
                                "(gradient_as_bucket_view is off)", shard_advice))
    if not model.fused_optimizer and workload.on_gpu and not offloaded:
        items.append(MemoryItem(role, "optimizer scratch", shape.parameters * state / shards, (step,),
                                "foreach AdamW's sqrt(exp_avg_sq) for all parameters at once",
                                "a fused AdamW (optim: adamw_torch_fused)"))
    if precision.autocast_copies:
        items.append(MemoryItem(role, "autocast weight copies", shape.parameters * precision.compute, (phase,),
                                f"autocast caches a {precision.compute} B copy of every weight for forward + backward",
                                "FSDP2 mixed precision casts one layer at a time: --backend fsdp2"))
    if backend.sharding == "fsdp2" and shards > 1 and model.unsharded_gradient_bytes:
        items.append(MemoryItem(role, "unsharded gradient", shape.parameters * model.unsharded_gradient_bytes, (phase,),
                                f"gradient sync waits for the last micro-batch: FSDP2 accumulates the whole model's "
                                f"gradient ({model.unsharded_gradient_bytes} B per param) on every GPU, offload or not",
                                "sync_gradients_each_micro_batch: true (reduce-scatter every micro-batch)"))
    if backend.sharding == "fsdp2":
        items.append(MemoryItem(role, "gathered layers", gathered_layers_bytes(shape, precision), (phase, "generation") if role == "policy" and not workload.use_vllm else (phase,),
                                "FSDP2 units unsharded while it computes (see gathered_layers_bytes)"))
    items += _backward_items(model, precision, workload, phase, gradients=0.0 if offloaded else gradients,
                            fsdp=backend.sharding == "fsdp2")
    return items


def _backward_items(model: PlannedModel, precision: Precision, workload: Workload, phase: str,
                    gradients: float, fsdp: bool) -> list[MemoryItem]:
    """Activations of one micro-batch's forward + backward, the LM head's buffers, and the overlap
    of gradients with freed activations.

    Backward frees each layer's saved tensors as it fills that layer's gradients, so with one
    micro-batch per optimizer step the peak is max(activations + head, gradients + what the last
    layer still holds), not their sum (measured on CPU: a 40M Qwen2 whose activations exceed its
    gradients peaks at activations + 5%). With gradient accumulation the previous micro-batches'
    gradients are all there: the sum.
    """
    shape, rows, seq = model.shape, model.rows, workload.sequence
    tokens = rows * seq
    full = shape.num_layers * decoder_layer_activation_bytes(shape, tokens, precision)
    one_layer = decoder_layer_activation_bytes(shape, tokens, precision)
    outside = outside_layers_activation_bytes(shape, rows, seq, precision)
    if model.checkpointing:
        saved = shape.num_layers * checkpointed_layer_bytes(shape, tokens, precision) + one_layer
        how = f"checkpointed inputs of {shape.num_layers} layers + one layer recomputed (without: {_gib(full + outside)} GiB)"
        advice = f"a smaller micro-batch ({rows} rows now)"
    else:
        saved = full
        with_ckpt = shape.num_layers * checkpointed_layer_bytes(shape, tokens, precision) + one_layer + outside
        how = f"all {shape.num_layers} layers saved (with gradient checkpointing: {_gib(with_ckpt)} GiB)"
        advice = "gradient_checkpointing: true" if model.role == "policy" else f"a smaller micro-batch ({rows} rows now)"
    activations = saved + outside
    scored = rows * (workload.completion_tokens if workload.on_gpu else seq - 1)
    head = lm_head_bytes(shape, scored, precision, trained=True, fp32_head=workload.fp32_head, fsdp=fsdp)
    working = backward_working_bytes(shape, tokens, precision)
    items = [
        MemoryItem(model.role, "activations", activations, (phase,),
                   f"{rows} rows x {seq} tokens: {how}", advice),
        MemoryItem(model.role, "LM head", head, (phase,),
                   f"TRL's fused log-prob head on {scored} tokens: hidden copy, logit tile, fp32 gradients and their casts",
                   f"a smaller micro-batch ({rows} rows now)"),
        MemoryItem(model.role, "backward buffers", working, (phase,), "gradients in flight inside one layer"),
    ]
    if not model.accumulates:
        still_held = one_layer + outside
        overlap = min(gradients, activations + head - still_held)
        if overlap > 0:
            items.append(MemoryItem(model.role, "gradient/activation overlap", -overlap, (phase,),
                                    "one micro-batch per step: gradients fill as activations are freed"))
    return items


def _frozen_items(model: PlannedModel, backend: Backend, precision: Precision) -> list[MemoryItem]:
    shape, shards = model.shape, backend.shards
    size = shape.parameters * precision.frozen / shards
    share = f"1/{shards} shard" if shards > 1 else "full copy"
    items = [MemoryItem(model.role, "weights", 0.0 if backend.offload else size, RESIDENT,
                        f"{_count(shape.parameters)} params x {precision.frozen} B, {share}, frozen"
                        + (", in CPU memory" if backend.offload else ""),
                        "" if backend.offload else "shard it: --backend fsdp2" if shards == 1 else "offload it: --backend fsdp2_offload",
                        host=size if backend.offload else 0.0)]
    return items


def gathered_layers_bytes(shape: ModelShape, precision: Precision, backward: bool = True) -> float:
    """What FSDP2 (accelerate's ``fsdp2_prepare_model``: one unit per decoder layer, the embedding
    and the final norm + LM head as units of their own) holds unsharded while a model computes, in
    the compute dtype: the current layer and the prefetched next one, the LM head (its unit stays
    gathered from the end of the forward to its backward) and, in a backward, the unsharded
    gradients of one layer and of the head before their reduce-scatter. The embedding unit is
    gathered only at the start of the forward and the end of the backward, when the head is not."""
    layers, heads = (3, 2) if backward else (2, 1)
    return (layers * shape.layer_parameters + heads * shape.head_parameters) * precision.compute


def _scoring_items(models: Sequence[PlannedModel], backend: Backend, precision: Precision,
                   workload: Workload) -> list[MemoryItem]:
    """The largest of the forwards without autograd (KL / PRM reference, PRM scoring, old
    log-probs); they run one after the other, so only the largest counts."""
    model = max(models, key=lambda m: m.rows * m.shape.intermediate_size)
    tokens = model.rows * workload.sequence
    scored = model.rows * (workload.completion_tokens if workload.on_gpu else workload.sequence - 1)
    size = (inference_working_bytes(model.shape, tokens, precision) + model.rows * workload.sequence**2
            + lm_head_bytes(model.shape, scored, precision, trained=False, fp32_head=workload.fp32_head))
    items = [MemoryItem(model.role, "forward buffers", size, ("scoring",),
                        f"{model.rows} rows x {workload.sequence} tokens without autograd",
                        f"a smaller micro-batch ({model.rows} rows now)")]
    if backend.sharding == "fsdp2":
        widest = max(models, key=lambda m: _unsharded_in_forward(m, precision))
        if widest.role == "KL reference":
            items.append(MemoryItem(widest.role, "gathered weights", _unsharded_in_forward(widest, precision),
                                    ("scoring",), "TRL's prepare_fsdp shards its KL reference as one unit, so "
                                    "its forward gathers all of it", "beta: 0 (no KL reference)"))
        else:
            items.append(MemoryItem(widest.role, "gathered layers", _unsharded_in_forward(widest, precision),
                                    ("scoring",), "FSDP2 units unsharded during the forward"))
    return items


def _unsharded_in_forward(model: PlannedModel, precision: Precision) -> float:
    """What FSDP2 gathers for one forward of ``model``: TRL's ``prepare_fsdp`` wraps its KL
    reference as a single unit (the whole model), while accelerate's ``fsdp2_prepare_model``, which
    the policy, the PRM and the PRM reference get, wraps each decoder layer."""
    if model.role == "KL reference":
        return model.shape.parameters * precision.compute
    return gathered_layers_bytes(model.shape, precision, backward=False)


def _generation_items(policy: PlannedModel, precision: Precision, workload: Workload,
                      capacity: float) -> list[MemoryItem]:
    if workload.use_vllm and workload.vllm_colocate:
        phases = ("generation",) if workload.vllm_sleeps else RESIDENT
        held = "during generation only (sleep mode)" if workload.vllm_sleeps else "for the whole run"
        advice = ("a lower vllm_gpu_memory_utilization" if workload.vllm_sleeps else
                  "vllm_enable_sleep_mode: true (frees it outside generation) or a lower vllm_gpu_memory_utilization")
        items = [MemoryItem("vLLM", "colocated engine", workload.vllm_share * capacity, phases,
                            f"gpu_memory_utilization {workload.vllm_share} of the GPU, {held}", advice)]
        residue = vllm_asleep_bytes(workload.vllm_sleeps, workload.vllm_asleep)
        if residue:
            items.append(MemoryItem("vLLM", "asleep residue", residue, tuple(p for p in PHASES if p != "generation"),
                                    "CUDA graphs and buffers sleep mode keeps (TRL does not set enforce_eager)",
                                    "--vllm_asleep_gb if measured otherwise"))
        return items
    if workload.use_vllm:
        return []  # vLLM server mode: generation runs on GPUs of its own
    shape, rows = policy.shape, workload.generation_rows
    cache = kv_cache_bytes(shape, rows, workload.sequence, precision)
    prefill_tokens = rows * workload.prompt_tokens
    prefill = (inference_working_bytes(shape, prefill_tokens, precision) + rows * workload.prompt_tokens**2
               + rows * shape.vocab_size * (precision.compute + 3 * 4))
    advice = f"use_vllm: true, or fewer rows per generation ({rows} = per_device_train_batch_size x steps_per_generation x oversample_factor)"
    return [MemoryItem("generate", "KV cache", cache, ("generation",),
                       f"{rows} rows x {workload.sequence} tokens", advice),
            MemoryItem("generate", "prefill buffers", prefill, ("generation",),
                       f"{rows} rows x {workload.prompt_tokens} prompt tokens at once; last-token logits in fp32", advice)]


def build_plan(models: Sequence[PlannedModel], backend: Backend, precision: Precision, workload: Workload,
               capacity: float) -> MemoryPlan:
    """Every item of every model, placed in its phases."""
    items: list[MemoryItem] = []
    if workload.on_gpu:
        items.append(MemoryItem("runtime", "CUDA context", CUDA_RUNTIME_BYTES, RESIDENT,
                                "CUDA context, cuBLAS workspaces, NCCL buffers"))
    for model in models:
        if model.trained:
            phase = "policy update" if model.role == "policy" else "PRM update"
            items += _trained_items(model, backend, precision, workload, phase)
        else:
            items += _frozen_items(model, backend, precision)
    items += _scoring_items(models, backend, precision, workload)
    items += _generation_items(models[0], precision, workload, capacity)
    notes = []
    if any(m.trained for m in models) and precision.trained == 2:
        notes.append("trained weights are 16-bit with a plain AdamW: an update of ~lr rounds away; load them "
                     "in fp32 (model_init_kwargs dtype float32) and compute in bf16")
    return MemoryPlan(tuple(items), tuple(models), backend, precision, workload, capacity, tuple(notes))


# ----------------------------------------------------------------------------------------------
# from the options of `prime-rl train`

def longest_prompt_tokens(prompts: Iterable[Any], tokenizer: Any, limit: int = 1000) -> int:
    """Tokens of the longest of the first ``limit`` prompts, as TRL tokenizes them (only those
    are read: a dataset column is not decoded past them)."""
    from primekit.rl.data import prompt_length

    return max((prompt_length(prompt, tokenizer) for prompt in itertools.islice(prompts, limit)), default=0)


def workload_for(config: Any, prompt_tokens: int, on_gpu: bool, vllm_asleep: float = VLLM_ASLEEP_BYTES) -> Workload:
    rows = round(config.per_device_train_batch_size * config.steps_per_generation * config.oversample_factor)
    return Workload(prompt_tokens=prompt_tokens, completion_tokens=config.max_completion_length,
                    generation_rows=rows, use_vllm=bool(config.use_vllm), vllm_colocate=config.vllm_mode == "colocate",
                    vllm_share=float(config.vllm_gpu_memory_utilization),
                    vllm_sleeps=bool(config.vllm_enable_sleep_mode), fp32_head=bool(config.cast_lm_head_to_fp32),
                    on_gpu=on_gpu, vllm_tensor_parallel=int(config.vllm_tensor_parallel_size or 1),
                    vllm_asleep=vllm_asleep)


def read_shapes(config: Any, policy: str) -> dict[str, ModelShape]:
    """The shape of every distinct model the run loads (policy, PRM, PRM reference)."""
    names = [policy]
    if config.uses_prm:
        names += [config.prm or policy, config.prm_ref or policy]
    return {name: read_model_shape(name) for name in dict.fromkeys(names)}


def plan_run(config: Any, policy: str, backend: Backend, capacity: float, prompt_tokens: int,
             on_gpu: bool, shapes: Mapping[str, ModelShape] | None = None,
             vllm_asleep: float = VLLM_ASLEEP_BYTES) -> MemoryPlan:
    """The plan of a ``prime-rl train`` run whose policy is ``policy`` (a resolved path or hub name);
    ``vllm_asleep``: bytes a sleeping colocated vLLM keeps (:data:`~primekit.rl.gpu_terms.VLLM_ASLEEP_BYTES`)."""
    shapes = shapes or read_shapes(config, policy)
    models = model_roles(config, policy, shapes, backend.gpus)
    precision = precision_for(config, backend, shapes[policy])
    return build_plan(models, backend, precision, workload_for(config, prompt_tokens, on_gpu, vllm_asleep), capacity)


# ----------------------------------------------------------------------------------------------
# output

def render_plan(plan: MemoryPlan, title: str, cpu_memory: float | None = None) -> None:
    """The plan as tables on stdout: every item, the phase totals, the verdict; and the CPU memory per
    node (with a verdict against ``cpu_memory`` bytes when given)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log file or pipe: keep one line per item
    unit = "GPU" if plan.workload.on_gpu else "process"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    columns = ["model", "item", f"GiB per {unit}"] + (["CPU GiB"] if plan.backend.offload else []) + ["live in", "what"]
    for column in columns:
        table.add_column(column, justify="right" if "GiB" in column else "left")
    for item in plan.items:
        when = "all phases" if item.phases == RESIDENT else ", ".join(item.phases)
        host = [_gib(item.host) if item.host else ""] if plan.backend.offload else []
        table.add_row(item.model, item.kind, _gib(item.device), *host, when, item.detail)
    console.print(table)
    phases = Table(title=f"Total per {unit} by phase", title_justify="left", box=box.SIMPLE_HEAD)
    phases.add_column("phase")
    phases.add_column("GiB", justify="right")
    for phase in plan.phases:
        phases.add_row(phase + ("  <- peak" if phase == plan.peak_phase else ""), _gib(plan.phase_total(phase)))
    console.print(phases)
    for note in plan.notes:
        console.print(f"note: {note}")
    if plan.vllm_minimum:
        console.print(f"vLLM colocated: its share is {_gib(plan.workload.vllm_share * plan.capacity)} GiB; it needs at least "
                      f"{_gib(plan.vllm_minimum)} GiB (weights / tensor parallel + one {plan.workload.sequence}-token "
                      f"sequence of KV + its profiling forward)")
    if plan.backend.offload:
        console.print(f"CPU memory of the offloaded states: {_gib(plan.host_per_node)} GiB per node "
                      f"({plan.backend.gpus_per_node} processes)")
    console.print(("FITS: " if plan.fits else "DOES NOT FIT: ") + plan.summary(), soft_wrap=True)
    if cpu_memory is not None or plan.backend.nodes > 1 or plan.backend.offload:
        from primekit.rl.host_memory import host_memory

        console.print(host_memory(plan).summary(cpu_memory), soft_wrap=True)


def environment_capacity(on_gpu: bool, processes_per_node: int) -> float:
    """Memory one process may use: its GPU's, or an equal share of the machine's RAM on CPU."""
    if on_gpu:
        import torch

        return float(torch.cuda.get_device_properties(int(os.environ.get("LOCAL_RANK", "0"))).total_memory)
    import psutil

    return psutil.virtual_memory().total / max(processes_per_node, 1)


def planned_processes(argv: Sequence[str]) -> int:
    """The process count a ``prime-rl plan`` command line plans for (``--gpus``, else the
    ``--accelerate_config``'s), read before the recipe is parsed; 1 when neither says (a bad
    value is reported by the full parse)."""
    import argparse

    reader = argparse.ArgumentParser(add_help=False)
    reader.add_argument("--gpus", type=int)
    reader.add_argument("--accelerate_config")
    known, _ = reader.parse_known_args(list(argv))
    if known.gpus and known.gpus > 0:
        return known.gpus
    if known.accelerate_config:
        try:
            return backend_from_accelerate_config(known.accelerate_config).gpus
        except InputError:
            return 1
    return 1


def config_class_for(processes: int) -> type:
    """``PrimeConfig`` as it parses on ``processes`` processes. TrainingArguments takes the world
    size from the running process group, which a plan made in one process for eight GPUs does not
    have, and the batch checks (``prm_mini_batch_size`` against the trained batch) depend on it."""
    from primekit.rl.config import PrimeConfig

    class PlannedPrimeConfig(PrimeConfig):
        @property
        def world_size(self) -> int:
            return processes

    return PlannedPrimeConfig


def plan_backend(options: PlanArguments) -> Backend:
    """The backend ``prime-rl plan`` was asked about: ``--accelerate_config`` or ``--backend``."""
    if options.accelerate_config:
        return backend_from_accelerate_config(options.accelerate_config, options.gpus, options.nodes)
    return backend_from_name(options.backend, options.gpus, options.nodes)


def check_before_training(config: Any, model_path: str, prompts: Iterable[Any], tokenizer: Any, *,
                          strict: bool, env: Mapping[str, str] | None = None) -> MemoryPlan | None:
    """``prime-rl train``'s start-up check, before any weight loads: the plan of this very run
    (backend and process count from the launcher's environment, the GPU's memory from CUDA, or an
    equal share of the machine's RAM per process on CPU). A run that does not fit is refused with
    ``strict`` and warned about otherwise. DeepSpeed and FSDP1 runs are not planned (None)."""
    env = os.environ if env is None else env
    backend = backend_from_environment(env)
    if backend is None:
        return None
    import torch

    on_gpu = torch.cuda.is_available() and not config.use_cpu
    prompt_tokens = config.max_prompt_length or longest_prompt_tokens(prompts, tokenizer)
    plan = plan_run(config, model_path, backend, environment_capacity(on_gpu, backend.gpus_per_node),
                    prompt_tokens, on_gpu)
    if not plan.fits:
        message = (f"the memory plan says this run does not fit: {plan.summary()}; `prime-rl plan` with the "
                   "same options shows every item")
        if strict:
            raise InputError(message)
        if env.get("RANK", "0") == "0":
            print(f"prime-rl train: warning: {message} (--strict_memory refuses such a run)", file=sys.stderr)
    return plan
