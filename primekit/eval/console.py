"""Console tables: a run's summary (``prime-eval run`` and ``grade``) and the paired comparison
of two runs (``prime-eval compare``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from primekit.eval.leaderboard import metric_sort_key
from primekit.eval.protocols import DEFAULT_PROTOCOL
from primekit.problems import benchmark_title

__all__ = ["print_comparison", "print_summary"]


def print_summary(summary: dict[str, Any]) -> None:
    metrics = sorted({m for entry in summary["benchmarks"].values() for m in entry["metrics"]},
                     key=metric_sort_key)
    protocol = summary.get("protocol", DEFAULT_PROTOCOL)
    table = Table(title=f"{summary.get('label', '')}: {summary.get('model', '')}, protocol "
                        f"{protocol} (%, {summary.get('confidence', 0.95):.0%} CI)")
    for column in ["benchmark", "problems", "n", "T", "max tokens", *metrics, "no answer",
                   "truncated"]:
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for name, entry in summary["benchmarks"].items():
        cells = []
        for metric in metrics:
            value = entry["metrics"].get(metric)
            cells.append("–" if value is None else f"{100 * value['value']:.1f} "
                         f"[{100 * value['ci_low']:.1f}, {100 * value['ci_high']:.1f}]")
        truncated = entry.get("truncated_rate")
        generation = entry.get("generation", {})
        table.add_row(benchmark_title(name), str(entry["num_problems"]),
                      str(entry["samples_per_problem"]), str(generation.get("temperature", "–")),
                      str(generation.get("max_new_tokens", "–")), *cells,
                      f"{100 * entry['no_answer_rate']:.1f}",
                      "–" if truncated is None else f"{100 * truncated:.1f}")
    console = Console()
    console.width = max(console.width, 100 + 20 * len(metrics))  # keep "v [lo, hi]" on one line
    console.print(table)


def print_comparison(report: dict[str, Any]) -> None:
    a, b = (Path(run).name for run in report["runs"])
    table = Table(title=f"pass@1 difference {b} - {a} (points, paired bootstrap "
                        f"{report['confidence']:.0%} CI)")
    for column in ["benchmark", "problems", "difference", "CI", "p"]:
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for name, result in report["benchmarks"].items():
        table.add_row(benchmark_title(name), str(result["num_problems"]),
                      f"{100 * result['difference']:+.1f}",
                      f"[{100 * result['ci_low']:+.1f}, {100 * result['ci_high']:+.1f}]",
                      f"{result['p_value']:.3f}")
    Console().print(table)
