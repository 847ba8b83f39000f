"""CPU memory of one machine of a ``prime-rl train`` run, from its memory plan.

Three things live in a machine's CPU memory besides the operating system:

- the offloaded states (FSDP2 ``CPUOffloadPolicy``): every process's shards of the weights,
  gradients and AdamW moments of every model, the plan's ``host`` items; torch pins them
  (``pin_memory=True`` by default), so they cannot be swapped out;
- full-model staging: loading reads the full weights into CPU memory (with FSDP's
  ``cpu_ram_efficient_loading`` only on rank 0, whose machine is the first; otherwise in every
  process), and saving gathers the full state dict to rank 0's CPU memory
  (``get_model_state_dict(full_state_dict=True, cpu_offload=True)``, one model at a time); the
  largest model in its loaded dtype counts once per staging process;
- per-process overhead: the Python interpreter with torch, transformers, TRL and vLLM imported, the
  CUDA runtime's host side and the data loader, taken as ``PROCESS_OVERHEAD_BYTES`` each (an
  assumption, not a measurement: such processes commonly sit at 3-5 GiB resident).
"""

from __future__ import annotations

from dataclasses import dataclass

from primekit.rl.plan.formulas import GIB
from primekit.rl.plan.memory import MemoryPlan

__all__ = ["HostMemory", "host_memory", "PROCESS_OVERHEAD_BYTES"]

#: Resident CPU memory assumed per training process besides offloaded states and staging.
PROCESS_OVERHEAD_BYTES = 4 * GIB


@dataclass(frozen=True)
class HostMemory:
    """CPU memory of the busiest machine (the one holding rank 0), by cause, in bytes."""

    nodes: int
    processes_per_node: int
    offloaded: float       # all offloaded shards of the machine's processes
    staging: float         # full-model copies read at load / gathered at save
    staging_copies: int
    overhead: float        # processes_per_node x PROCESS_OVERHEAD_BYTES

    @property
    def total(self) -> float:
        return self.offloaded + self.staging + self.overhead

    def fits(self, capacity: float) -> bool:
        return self.total <= capacity

    def summary(self, capacity: float | None = None) -> str:
        """One line: the total per node, its parts, and the verdict when ``capacity`` is given."""
        line = (f"CPU memory per node ({self.nodes} node(s), {self.processes_per_node} processes each): "
                f"{self.total / GIB:.1f} GiB = offloaded states {self.offloaded / GIB:.1f} + full-model staging "
                f"{self.staging / GIB:.1f} ({self.staging_copies} cop{'y' if self.staging_copies == 1 else 'ies'} "
                f"at load and save) + {self.processes_per_node} processes x {PROCESS_OVERHEAD_BYTES / GIB:.0f} GiB")
        if capacity is None:
            return line + " (give --cpu_memory_gb for a verdict)"
        verdict = "FITS" if self.fits(capacity) else "DOES NOT FIT"
        return f"{line}: {verdict} in {capacity / GIB:.0f} GiB per node"


def host_memory(plan: MemoryPlan) -> HostMemory:
    """The CPU memory of ``plan``'s busiest machine (see the module docstring)."""
    backend = plan.backend
    per_node = backend.gpus_per_node
    offloaded = sum(item.host for item in plan.items) * per_node
    loaded_bytes = plan.precision.trained
    largest = max(model.shape.parameters * (loaded_bytes if model.trained else plan.precision.frozen)
                  for model in plan.models)
    copies = 1 if backend.ram_efficient_loading else per_node
    return HostMemory(nodes=backend.nodes, processes_per_node=per_node, offloaded=offloaded,
                      staging=largest * copies, staging_copies=copies,
                      overhead=per_node * PROCESS_OVERHEAD_BYTES)
