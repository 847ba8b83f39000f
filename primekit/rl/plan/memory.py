"""Memory plan of a ``prime-rl train`` run: per GPU, from the models' ``config.json``, before any weight loads.

PRIME holds up to four causal LMs on every GPU: the policy (trained), the implicit PRM (trained,
or frozen with ``prm_update: none``, absent with ``process_reward_coef: 0``), the PRM's frozen
reference and TRL's frozen KL reference (``beta > 0``; one model when the trainer shares it with
the PRM reference). This module places what each of them costs on one GPU (the terms of
:mod:`primekit.rl.plan.formulas`) under the chosen parallelism (DDP, FSDP2, FSDP2 with CPU
offload) and precision, at the recipe's lengths and micro-batches, and says whether the run fits
and what to change when it does not. The run is split into phases, because not everything is
alive at once:

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
from dataclasses import dataclass
from typing import Any

import psutil

from primekit.errors import InputError
from primekit.rl.data import prompt_length
from primekit.rl.plan.formulas import (
    GIB,
    VLLM_ASLEEP_BYTES,
    Precision,
    adamw_state_bytes,
    backward_working_bytes,
    checkpointed_layer_bytes,
    decoder_layer_activation_bytes,
    gathered_layers_bytes,
    inference_working_bytes,
    kv_cache_bytes,
    lm_head_bytes,
    outside_layers_activation_bytes,
    vllm_asleep_bytes,
    vllm_minimum_bytes,
)
from primekit.rl.plan.launcher import Backend, backend_from_environment
from primekit.rl.plan.shapes import DTYPE_BYTES, ModelShape, read_model_shape

__all__ = [
    "CUDA_RUNTIME_BYTES", "PHASES", "RESIDENT", "MemoryItem", "MemoryPlan", "PlannedModel", "Workload",
    "build_plan", "check_before_training", "format_gib", "longest_prompt_tokens", "model_roles", "plan_run",
    "precision_for", "read_shapes", "workload_for",
]

#: Reserved on every GPU for the CUDA context, cuBLAS workspaces and NCCL buffers (about 0.5-1 GiB
#: on an A100 with torch 2.x); not counted for CPU processes.
CUDA_RUNTIME_BYTES = 1 * GIB
PHASES = ("generation", "scoring", "PRM update", "PRM step", "policy update", "policy step")
RESIDENT = PHASES


def _load_bytes(model_init_kwargs: Mapping[str, Any] | None, shape: ModelShape) -> int:
    """Storage of a model loaded with the recipe's ``model_init_kwargs``: TRL's
    ``create_model_from_path`` defaults to float32; ``"auto"`` takes config.json's dtype."""
    dtype = str((model_init_kwargs or {}).get("dtype", "float32")).removeprefix("torch.")
    if dtype == "auto":
        return shape.config_dtype_bytes
    if dtype not in DTYPE_BYTES:
        raise InputError(f"unknown dtype '{dtype}' in model_init_kwargs", field="model_init_kwargs")
    return DTYPE_BYTES[dtype]


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
    vllm_asleep: float = VLLM_ASLEEP_BYTES  # what the sleeping engine keeps (its CUDA graphs; see formulas)

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
                   else f"does not fit ({format_gib(self.peak - self.capacity)} GiB over)" if self.peak > self.capacity
                   else f"does not fit: vLLM's share {format_gib(self.workload.vllm_share * self.capacity)} GiB is below the "
                        f"{format_gib(self.vllm_minimum)} GiB it needs at least (vllm_gpu_memory_utilization >= "
                        f"{math.ceil(100 * self.vllm_minimum / self.capacity) / 100:.2f}, or vllm_tensor_parallel_size > "
                        f"{self.workload.vllm_tensor_parallel})")
        largest = self.largest
        line = f"peak {format_gib(self.peak)} GiB per {unit} ({self.peak_phase}) of {format_gib(self.capacity)} GiB: {verdict}"
        if self.vllm_share_too_small and self.peak <= self.capacity:
            return line
        return f"{line}; largest item: {largest.model} {largest.kind} {format_gib(largest.device)} GiB ({largest.advice})"


def _count(parameters: int) -> str:
    return f"{parameters / 1e9:.2f}B" if parameters >= 1e9 else f"{parameters / 1e6:.1f}M"


def format_gib(value: float) -> str:
    return f"{value / GIB:.2f}" if abs(value) < 10 * GIB else f"{value / GIB:.1f}"


def model_roles(config: Any, policy: str, shapes: Mapping[str, ModelShape], gpus: int) -> list[PlannedModel]:
    """The models ``PrimeTrainer`` holds, as it decides them
    (:meth:`primekit.rl.prm_update.ImplicitPrmMixin._load_prm`): TRL's KL reference exists when ``beta != 0``; the PRM reference *is* that model when it names the
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

    shard_advice = ("shard it: --parallelism fsdp2 (recipes/accelerate/fsdp2_8gpu.yaml)" if backend.sharding == "ddp"
                    else "offload it: --parallelism fsdp2_offload (recipes/accelerate/fsdp2_offload_8gpu.yaml) "
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
                                "FSDP2 mixed precision casts one layer at a time: --parallelism fsdp2"))
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
    layer still holds), not their sum (as ``benchmarks/memory_plan.py`` measures on CPU). With
    gradient accumulation the previous micro-batches' gradients are all there: the sum.
    """
    shape, rows, seq = model.shape, model.rows, workload.sequence
    tokens = rows * seq
    full = shape.num_layers * decoder_layer_activation_bytes(shape, tokens, precision)
    one_layer = decoder_layer_activation_bytes(shape, tokens, precision)
    outside = outside_layers_activation_bytes(shape, rows, seq, precision)
    if model.checkpointing:
        saved = shape.num_layers * checkpointed_layer_bytes(shape, tokens, precision) + one_layer
        how = f"checkpointed inputs of {shape.num_layers} layers + one layer recomputed (without: {format_gib(full + outside)} GiB)"
        advice = f"a smaller micro-batch ({rows} rows now)"
    else:
        saved = full
        with_ckpt = shape.num_layers * checkpointed_layer_bytes(shape, tokens, precision) + one_layer + outside
        how = f"all {shape.num_layers} layers saved (with gradient checkpointing: {format_gib(with_ckpt)} GiB)"
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
                        "" if backend.offload else "shard it: --parallelism fsdp2" if shards == 1 else "offload it: --parallelism fsdp2_offload",
                        host=size if backend.offload else 0.0)]
    return items


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


def longest_prompt_tokens(prompts: Iterable[Any], tokenizer: Any, limit: int = 1000) -> int:
    """Tokens of the longest of the first ``limit`` prompts, as TRL tokenizes them (only those
    are read: a dataset column is not decoded past them)."""
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
    ``vllm_asleep``: bytes a sleeping colocated vLLM keeps (:data:`~primekit.rl.plan.formulas.VLLM_ASLEEP_BYTES`)."""
    shapes = shapes or read_shapes(config, policy)
    models = model_roles(config, policy, shapes, backend.gpus)
    precision = precision_for(config, backend, shapes[policy])
    return build_plan(models, backend, precision, workload_for(config, prompt_tokens, on_gpu, vllm_asleep), capacity)


def environment_capacity(on_gpu: bool, processes_per_node: int) -> float:
    """Memory one process may use: its GPU's, or an equal share of the machine's RAM on CPU."""
    if on_gpu:
        import torch  # heavy: the CUDA query of a GPU run

        return float(torch.cuda.get_device_properties(int(os.environ.get("LOCAL_RANK", "0"))).total_memory)
    return psutil.virtual_memory().total / max(processes_per_node, 1)


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
    import torch  # heavy: whether this process has CUDA

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
