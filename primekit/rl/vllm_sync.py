"""Weight sync from the trained policy to a colocated vLLM engine that repacks its weights.

TRL's colocate mode copies each parameter into vLLM with the model's ``load_weights``. vLLM's CPU
back end (and its quantized kernels) repack linear weights into kernel layouts after loading and
drop the checkpoint-format parameters, so that call fails from the second load on. vLLM >= 0.32
has the supported path, ``reload_weights``: it takes checkpoint-format tensors and runs the same
post-processing again. This routes TRL's sync through it where the engine has it, and leaves
every other case (server mode, sleep mode, older vLLM) to TRL.
"""

from __future__ import annotations

from typing import Any


def reload_colocated_weights(vllm_generation: Any) -> bool:
    """Make ``vllm_generation.sync_weights`` use vLLM's in-place ``reload_weights``; returns
    whether it did."""
    if getattr(vllm_generation, "mode", None) != "colocate" or \
            getattr(vllm_generation, "enable_sleep_mode", False):
        return False
    worker = vllm_generation.llm.llm_engine.model_executor.driver_worker
    reload = getattr(worker, "reload_weights", None)
    if reload is None:
        return False

    def sync_weights() -> None:
        reload(weights_iterator=vllm_generation._iter_named_params())
        vllm_generation.llm.reset_prefix_cache()

    vllm_generation.sync_weights = sync_weights
    return True
