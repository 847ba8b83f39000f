"""The memory plan's terms: bytes as small pure functions of a model's shape, the dtypes and the batch.

Each function's docstring says where its formula comes from: the tensors a layer saves for its
backward (counted in transformers' modeling code and checked against autograd), what TRL's fused LM
head, FSDP2's gathered units and a colocated vLLM hold, and what a GPU really exposes.
"""

from __future__ import annotations

from dataclasses import dataclass

from primekit.rl.plan.shapes import ModelShape

__all__ = [
    "GIB", "USABLE_GPU_FRACTION", "VLLM_ASLEEP_BYTES", "Precision", "adamw_state_bytes", "backward_working_bytes",
    "checkpointed_layer_bytes", "decoder_layer_activation_bytes", "fused_head_gradient_bytes",
    "gathered_layers_bytes", "inference_working_bytes", "kv_cache_bytes", "lm_head_bytes",
    "outside_layers_activation_bytes", "usable_gpu_bytes", "vllm_asleep_bytes", "vllm_minimum_bytes",
]

GIB = 2**30

#: Fraction of a GPU's nominal memory that CUDA reports as its total (``torch.cuda.
#: get_device_properties().total_memory``, ``cudaMemGetInfo``): an "80 GB" A100 / H100 has 80 GiB
#: of HBM, of which the driver keeps some (page tables, ECC, firmware), so PyTorch and vLLM see
#: about 79.1-79.3 GiB: vLLM logs "total_gpu_memory (79.33GiB)" (vllm-project/vllm PR #11743) and
#: "(79.14GiB)" (issue #17117) on 80 GB GPUs, and torch's out-of-memory message says "79.25 GiB total
#: capacity" on an A100 80GB (levihsu/OOTDiffusion issue #235). 79.2 / 80 is the assumption.
USABLE_GPU_FRACTION = 79.2 / 80

#: What a colocated vLLM engine still holds on the GPU while it sleeps. TRL's colocated ``LLM(...)``
#: passes no ``enforce_eager`` (trl/generation/vllm_generation.py, the ``LLM(`` call), so vLLM
#: captures CUDA graphs at start-up, and its sleep (TRL calls ``sleep(level=2)``) releases only the
#: memory of its cuMem allocator's ``weights`` and ``kv_cache`` tags: the CUDA-graph pool and the
#: other buffers of its native allocator stay resident ("Level-1 cuMem sleep releases weights and KV
#: cache, but leaves graph executables and native CUDA graph pools resident", vllm-project/vllm PR
#: #56373; a capture of 1.5 GB reported in issue #47654). 1 GiB is the assumed residue for a 7B-32B
#: model on one GPU; ``--vllm_asleep_gb`` sets it.
VLLM_ASLEEP_BYTES = 1.0 * GIB


def usable_gpu_bytes(nominal_gib: float, usable_fraction: float = USABLE_GPU_FRACTION) -> float:
    """Bytes of one GPU that PyTorch and vLLM can allocate from: its nominal GiB times the share
    CUDA reports as total (the CUDA context, which the plan charges as an item, comes out of it)."""
    return nominal_gib * GIB * usable_fraction


def fused_head_gradient_bytes(head_parameters: int, scored_tokens: int, hidden_size: int, *, hidden_bytes: int,
                              weight_bytes: int, trained: bool, weight_cast_counted: bool) -> float:
    """What the backward of a trained model's fused LM head (``_ChunkedLogProbFunction.backward``,
    trl/kernels/chunked_logprob.py) holds when it returns.

    It accumulates the hidden states' gradient (tokens x h) and, for a trained head, the weight's
    gradient (vocab x h) in fp32, then returns each cast to its input's dtype (``grad_hidden.to(
    hidden.dtype)``, ``grad_weight.to(weight.dtype)``): when that dtype is 16-bit, the fp32 buffer
    and its cast coexist. ``hidden_bytes`` / ``weight_bytes`` are the dtypes the head sees (fp32 with
    ``cast_lm_head_to_fp32``; under FSDP2 mixed precision the gathered bf16 weight). The weight's
    16-bit cast is the unsharded gradient FSDP2 reduce-scatters, which ``gathered_layers_bytes``
    already counts (``weight_cast_counted``); the weight itself is cast to the compute dtype one
    vocabulary tile at a time, which the logit tile's term covers.
    """
    if not trained:
        return 0.0  # a frozen model's head runs without autograd: no backward
    hidden = scored_tokens * hidden_size * (4 + (hidden_bytes if hidden_bytes < 4 else 0))
    cast = weight_bytes if weight_bytes < 4 and not weight_cast_counted else 0
    return hidden + head_parameters * (4 + cast)


def vllm_asleep_bytes(sleeps: bool, residue: float = VLLM_ASLEEP_BYTES) -> float:
    """GPU memory a colocated vLLM engine keeps outside generation when sleep mode frees the rest
    (:data:`VLLM_ASLEEP_BYTES`); 0 without sleep mode, where its whole share stays (charged as such)."""
    return residue if sleeps else 0.0


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
    dtype and two fp32 hidden-wide ones per token; calibrated against the peaks that
    ``benchmarks/memory_plan.py`` measures on CPU."""
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
    (:func:`fused_head_gradient_bytes`). The weight it sees: under FSDP2
    (``fsdp``) the gathered one in the parameters' forward dtype (mixed precision gathers bf16 even
    for a head TRL cast to fp32); otherwise the stored head, fp32 with ``cast_lm_head_to_fp32``.
    """
    # trl's tile sizes; imported here so the formulas' module loads without trl's import cost
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import (
        _CHUNKED_LOGPROB_CHUNK_SIZE,  # heavy: loaded on use, so importing this module stays fast
    )

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


def gathered_layers_bytes(shape: ModelShape, precision: Precision, backward: bool = True) -> float:
    """What FSDP2 (accelerate's ``fsdp2_prepare_model``: one unit per decoder layer, the embedding
    and the final norm + LM head as units of their own) holds unsharded while a model computes, in
    the compute dtype: the current layer and the prefetched next one, the LM head (its unit stays
    gathered from the end of the forward to its backward) and, in a backward, the unsharded
    gradients of one layer and of the head before their reduce-scatter. The embedding unit is
    gathered only at the start of the forward and the end of the backward, when the head is not."""
    layers, heads = (3, 2) if backward else (2, 1)
    return (layers * shape.layer_parameters + heads * shape.head_parameters) * precision.compute

