"""``prime-rl plan``'s report: the memory plan as tables (every item, the phase totals), the verdict,
and the CPU memory per node."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from primekit.rl.plan.host_memory import host_memory
from primekit.rl.plan.memory import RESIDENT, MemoryPlan, format_gib

__all__ = ["render_plan"]


def render_plan(plan: MemoryPlan, title: str, cpu_memory: float | None = None) -> None:
    """The plan as tables on stdout: every item, the phase totals, the verdict; and the CPU memory per
    node (with a verdict against ``cpu_memory`` bytes when given)."""
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
        host = [format_gib(item.host) if item.host else ""] if plan.backend.offload else []
        table.add_row(item.model, item.kind, format_gib(item.device), *host, when, item.detail)
    console.print(table)
    phases = Table(title=f"Total per {unit} by phase", title_justify="left", box=box.SIMPLE_HEAD)
    phases.add_column("phase")
    phases.add_column("GiB", justify="right")
    for phase in plan.phases:
        phases.add_row(phase + ("  <- peak" if phase == plan.peak_phase else ""), format_gib(plan.phase_total(phase)))
    console.print(phases)
    for note in plan.notes:
        console.print(f"note: {note}")
    if plan.vllm_minimum:
        console.print(f"vLLM colocated: its share is {format_gib(plan.workload.vllm_share * plan.capacity)} GiB; it needs at least "
                      f"{format_gib(plan.vllm_minimum)} GiB (weights / tensor parallel + one {plan.workload.sequence}-token "
                      f"sequence of KV + its profiling forward)")
    if plan.backend.offload:
        console.print(f"CPU memory of the offloaded states: {format_gib(plan.host_per_node)} GiB per node "
                      f"({plan.backend.gpus_per_node} processes)")
    console.print(("FITS: " if plan.fits else "DOES NOT FIT: ") + plan.summary(), soft_wrap=True)
    if cpu_memory is not None or plan.backend.nodes > 1 or plan.backend.offload:
        console.print(host_memory(plan).summary(cpu_memory), soft_wrap=True)


