"""Best-of-N results as people read them: a Markdown table, an accuracy-vs-N plot, a console table.

All three show the same numbers: per rule and N, the mean accuracy over problems (in %) and its
bootstrap interval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from primekit.bon.rerank import Method

Summary = dict[str, dict[int, dict[str, float]]]


def cell(metric: dict[str, float]) -> str:
    """``62.0 [58.1, 65.9]``: accuracy and interval in percent."""
    return (f"{100 * metric['value']:.1f} [{100 * metric['ci_low']:.1f}, "
            f"{100 * metric['ci_high']:.1f}]")


def markdown_table(summary: Summary, methods: Sequence[Method], ns: Sequence[int]) -> str:
    header = "| rule | " + " | ".join(f"N={n}" for n in ns) + " |"
    rule = "|---|" + "---|" * len(ns)
    rows = [f"| {m.label} | " + " | ".join(cell(summary[m.key][n]) for n in ns) + " |"
            for m in methods]
    return "\n".join([header, rule, *rows])


def plot_curves(summary: Summary, methods: Sequence[Method], ns: Sequence[int],
                path: str | os.PathLike, title: str) -> Path:
    """Accuracy vs N (log2 axis), one line per rule with its interval as error bars (nudged
    sideways so that overlapping intervals stay readable); a PNG file."""
    import matplotlib  # heavy: loaded only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: loaded only when a plot is drawn

    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for index, method in enumerate(methods):
        nudge = 2 ** (0.03 * (index - (len(methods) - 1) / 2))
        values = np.array([100 * summary[method.key][n]["value"] for n in ns])
        low = values - np.array([100 * summary[method.key][n]["ci_low"] for n in ns])
        high = np.array([100 * summary[method.key][n]["ci_high"] for n in ns]) - values
        style = "--" if method.kind in ("random", "oracle") else "-"
        axes.errorbar([n * nudge for n in ns], values, yerr=[low, high], fmt=style, marker="o",
                      markersize=3, capsize=2, linewidth=1.4, elinewidth=0.8, label=method.label)
    axes.set_xscale("log", base=2)
    axes.set_xticks(list(ns), [str(n) for n in ns])
    axes.set_xlabel("N (candidates per problem)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def print_table(summary: Summary, methods: Sequence[Method], ns: Sequence[int], title: str,
                confidence: float = 0.95) -> None:
    """The same numbers on the console: accuracy per N, and the interval at the largest N (the
    full table with every interval is in ``table.md``)."""

    table = Table(title=title)
    table.add_column("rule")
    for n in ns:
        table.add_column(f"N={n}", justify="right")
    table.add_column(f"{confidence:.0%} CI, N={ns[-1]}", justify="right")
    for method in methods:
        last = summary[method.key][ns[-1]]
        table.add_row(method.label, *(f"{100 * summary[method.key][n]['value']:.1f}" for n in ns),
                      f"{100 * last['ci_low']:.1f}-{100 * last['ci_high']:.1f}")
    Console().print(table)
