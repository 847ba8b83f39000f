"""The toy policy through ``prime-eval run``: greedy vs sampled (T=1, n=4) on the same toy problems,
side by side, with every metric's 95% bootstrap interval and the generation throughput.

    .venv/bin/python benchmarks/eval_toy.py [--problems 500]

Prints a Markdown section and writes it to ``benchmarks/results/eval_toy.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from primekit.cli import dispatch
from primekit.eval.leaderboard import metric_sort_key
from primekit.io import atomic_write_text

SETTINGS = {"greedy": [], "T=1, n=4": ["--n", "4", "--temperature", "1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=500)
    args = parser.parse_args()
    command = f".venv/bin/python benchmarks/eval_toy.py --problems {args.problems}"
    summaries, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in SETTINGS.items():
            out = Path(tmp) / name.replace(" ", "").replace(",", "-")
            start = time.perf_counter()
            status = dispatch("prime-eval", ["run", "--limit", str(args.problems), "--out", str(out),
                                             *extra])
            if status != 0:
                raise SystemExit(f"prime-eval run failed ({status})")
            seconds[name] = time.perf_counter() - start
            summaries[name] = json.loads((out / "summary.json").read_text())["benchmarks"]["toy"]
    metrics = sorted({m for s in summaries.values() for m in s["metrics"]}, key=metric_sort_key)
    lines = ["## Toy policy through `prime-eval run`", "",
             f"`{command}` — the SFT-warmed toy policy on the first {args.problems} toy test "
             "problems, greedy and sampled (T=1, 4 samples) in one run of this script. Accuracy in "
             "%, [95% percentile-bootstrap interval over problems]; samples/s counts the whole command "
             "(model loading and grading included).", "",
             "| setting | " + " | ".join(metrics) + " | samples/s |",
             "|---" * (len(metrics) + 2) + "|"]
    for name, summary in summaries.items():
        cells = []
        for metric in metrics:
            value = summary["metrics"].get(metric)
            cells.append("–" if value is None else f"{100 * value['value']:.1f} "
                         f"[{100 * value['ci_low']:.1f}, {100 * value['ci_high']:.1f}]")
        rate = summary["num_problems"] * summary["samples_per_problem"] / seconds[name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {rate:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(Path(__file__).parent / "results" / "eval_toy.md", text)


if __name__ == "__main__":
    main()
