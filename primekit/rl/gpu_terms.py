"""Terms of the memory plan that depend on what a GPU, TRL's fused LM head and a sleeping vLLM
really hold, beyond the models' own states: each a small pure function whose docstring says where
its number comes from.
"""

from __future__ import annotations

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
