"""Assemble BENCHMARKS.md from the sections the benchmark scripts write to benchmarks/results/.

Each script measures side by side in one run and writes its own section (with the command that
reproduces it); this only puts them in order and points images at their folder.

    .venv/bin/python benchmarks/build_report.py
"""

from __future__ import annotations

import re
from pathlib import Path

from primekit.io import atomic_write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ORDER = ["toy_policy", "prm_auc", "prm_bench", "grader", "generation_throughput", "bon_qwen_set", "bon_toy",
         "bon_throughput", "rl_step_time", "memory_plan", "rl_curves", "rl_ablation", "credit_diagnostic", "rl_gpu"]
INTRO = """# Benchmarks

Performance and fidelity experiments. Each section was written by the script it names, measuring
the compared variants side by side in one run; re-run that command to reproduce it, then
`.venv/bin/python benchmarks/build_report.py` to rebuild this file. Unless a section says
otherwise, numbers are from a 2-core CPU machine (torch 2.13, transformers 5.24, trl 1.16).
"""


def _section(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    # images are written next to their section; from the repository root they live in results/
    return re.sub(r"\]\((?!https?:|/|benchmarks/)([^)]+\.png)\)", r"](benchmarks/results/\1)", text)


def main() -> None:
    names = [name for name in ORDER if (RESULTS / f"{name}.md").exists()]
    names += sorted(p.stem for p in RESULTS.glob("*.md") if p.stem not in ORDER)
    body = "\n\n".join(_section(RESULTS / f"{name}.md") for name in names)
    atomic_write_text(HERE.parent / "BENCHMARKS.md", INTRO + "\n" + body + "\n")


if __name__ == "__main__":
    main()
