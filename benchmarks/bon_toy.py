"""Best-of-N in the toy world: does the toy implicit PRM pick better answers than chance?

The toy policy samples 16 candidates (temperature 1) for each of the first toy test problems; the
toy implicit PRM (``prime-prm train`` without options) scores them, and Best-of-N by its step
rewards is compared with a single sample, majority vote, the PRM-weighted vote and the oracle.
The headline is the paired difference BoN@16 - mean single-sample accuracy, with a bootstrap
interval over problems.

    flock /tmp/primekit-heavy.lock .venv/bin/python benchmarks/bon_toy.py
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from primekit.bon import report
from primekit.bon.commands import (RerankArguments, SampleArguments, run_rerank, sample_candidates,
                                   toy_prm_path)
from primekit.bon.rerank import paired_difference
from primekit.io import atomic_write_text
from primekit.paths import cache_dir

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-heavy.lock .venv/bin/python benchmarks/bon_toy.py"
NUM_PROBLEMS, N = 500, 16


def _signed(metric: dict[str, float]) -> str:
    return (f"{100 * metric['value']:+.1f} points [{100 * metric['ci_low']:+.1f}, "
            f"{100 * metric['ci_high']:+.1f}]")


def pairwise_auc(scores: np.ndarray, correct: np.ndarray) -> float | None:
    """P(a right candidate outscores a wrong one of the same problem), ties counting 1/2."""
    right, wrong = scores[correct], scores[~correct]
    if not len(right) or not len(wrong):
        return None
    return float(((right[:, None] > wrong[None, :]) + 0.5 * (right[:, None] == wrong[None, :])).mean())


def diagnosis(reranked: Path) -> list[str]:
    """Why Best-of-N by the PRM peaks early: how well it orders candidates within a problem, and
    what it rewards."""
    rows = [json.loads(line) for line in reranked.read_text().splitlines()]
    total: dict[str, list[float]] = {"min": [], "sum": [], "worked": []}
    skipped, worked = [], []
    for row in rows:
        steps = row["step_scores"]["implicit_prm"]
        correct = np.array(row["correct"], dtype=bool)
        for how, reduce in (("min", min), ("sum", sum)):
            auc = pairwise_auc(np.array([reduce(s) for s in steps]), correct)
            if auc is not None:
                total[how].append(auc)
        for text, s in zip(row["candidates"], steps):
            (worked if "=" in text else skipped).append(sum(s))
        is_worked = np.array(["=" in text for text in row["candidates"]])
        auc = pairwise_auc(np.array([min(s) for s in steps])[is_worked], correct[is_worked])
        if auc is not None:
            total["worked"].append(auc)
    return [f"Within a problem, a right candidate outscores a wrong one with probability "
            f"{np.mean(total['min']):.2f} (min step reward) / {np.mean(total['sum']):.2f} "
            f"(sequence reward), over the {len(total['min'])} problems that have both. Candidates "
            f"that skip the steps (a guessed `\\boxed{{}}`, {len(skipped)} of "
            f"{len(skipped) + len(worked)}) average a sequence reward of {np.mean(skipped):.2f}, "
            f"worked solutions {np.mean(worked):.2f}. Among worked solutions alone the ordering "
            f"probability (min step reward) is {np.mean(total['worked']):.2f}: the PRM mostly "
            "learned to reject guesses, it separates a right worked solution from one with an "
            "arithmetic slip less well, and the maximum over many candidates increasingly "
            "lands on a slip the PRM overrates."]


def main() -> int:
    work = cache_dir() / "bon-toy-benchmark"
    prm = toy_prm_path()
    started = time.perf_counter()
    candidates = sample_candidates(SampleArguments(
        out=str(work / "candidates.jsonl"), benchmark="toy", n=N, limit=NUM_PROBLEMS,
        max_new_tokens=64, batch_size=256, dtype="float32"), show_progress=False)
    sampled = time.perf_counter()
    result = run_rerank(RerankArguments(input=str(candidates), out=str(work / "out"), prm=str(prm),
                                        aggregate="min,last,mean", dtype="float32", batch_size=64),
                        show_progress=False)
    scored = time.perf_counter()
    shutil.copy(work / "out" / "curve.png", RESULTS / "bon_toy.png")
    curves, summary = result.curves, result.summary
    bon_min, bon_last = "bon/implicit_prm/min", "bon/implicit_prm/last"
    lines = [
        "## Best-of-N in the toy world (toy implicit PRM)", "",
        f"`{COMMAND}`. The toy policy samples {N} candidates at temperature 1 for each of the "
        f"first {NUM_PROBLEMS} toy test problems; the toy implicit PRM (`prime-prm train` without "
        f"options, saved in `{prm}`) scores them. Accuracy in %, [95% percentile-bootstrap "
        "interval over problems]; N < 16 averages 256 random N-subsets per problem (the same "
        "subsets for every rule); ties count as the expected accuracy of a uniform tie-break.", "",
        report.markdown_table(summary, result.methods, result.ns), "",
        f"Paired differences at N={N} (bootstrap over problems of the per-problem difference):", "",
        f"- PRM BoN (min) - single sample: {_signed(paired_difference(curves, bon_min, 'random', N))}",
        f"- PRM BoN (last = sequence reward) - single sample: "
        f"{_signed(paired_difference(curves, bon_last, 'random', N))}",
        f"- PRM BoN (min) - majority vote: {_signed(paired_difference(curves, bon_min, 'majority', N))}",
        f"- PRM weighted vote - majority vote: "
        f"{_signed(paired_difference(curves, 'vote/implicit_prm', 'majority', N))}", "",
        *diagnosis(work / "out" / "reranked.jsonl"), "",
        f"Sampling took {sampled - started:.0f} s and scoring + evaluation {scored - sampled:.0f} s "
        "(a second run reuses both: the candidates file and the score cache).", "",
        "![accuracy vs N](bon_toy.png)", ""]
    text = "\n".join(lines)
    atomic_write_text(RESULTS / "bon_toy.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
