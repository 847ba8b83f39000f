"""Best-of-N in the toy world: does the toy implicit PRM pick better answers than chance?

The toy policy samples 16 candidates (temperature 1) for each of the first toy test problems; the
toy implicit PRM (``prime-prm train`` without options) scores them, and Best-of-N by each of its
aggregates (``min_q``: EurusPRM Stage 1's minimum of the running Q; ``min_step``: the weakest step
reward; ``last``: the sequence reward; ``mean``; ``sum_q``) is compared with a single sample,
majority vote, the PRM-weighted votes and the oracle. The headline is the paired difference
BoN@16 - mean single-sample accuracy, with a bootstrap interval over problems.

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/bon_toy.py
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from primekit.bon import report
from primekit.arguments import LoadArguments, PRMReadingArguments, SamplingArguments
from primekit.bon.commands import RerankArguments, SampleArguments, run_rerank, sample_candidates
from primekit.bon.rerank import paired_difference
from primekit.io import atomic_write_text
from primekit.paths import cache_dir
from primekit.prm.reading import aggregate, read_prm_record
from primekit.prm.toy_prm import ensure_toy_prm

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/bon_toy.py"
NUM_PROBLEMS, N = 500, 16
AGGREGATES = ("min_q", "min_step", "last", "mean", "sum_q")


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
    """Why Best-of-N by the PRM peaks early: how well each aggregate orders candidates within a
    problem, and what the PRM rewards."""
    rows = [json.loads(line) for line in reranked.read_text().splitlines()]
    auc: dict[str, list[float]] = {how: [] for how in ("min_q", "min_step", "last")}
    worked_auc: list[float] = []
    skipped, worked = [], []
    for row in rows:
        steps = row["step_scores"]["implicit_prm"]
        correct = np.array(row["correct"], dtype=bool)
        for how in auc:
            value = pairwise_auc(np.array([aggregate(s, how) for s in steps]), correct)
            if value is not None:
                auc[how].append(value)
        for text, s in zip(row["candidates"], steps):
            (worked if "=" in text else skipped).append(sum(s))
        is_worked = np.array(["=" in text for text in row["candidates"]])
        value = pairwise_auc(np.array([aggregate(s, "min_q") for s in steps])[is_worked], correct[is_worked])
        if value is not None:
            worked_auc.append(value)
    return [f"Within a problem, a right candidate outscores a wrong one with probability "
            f"{np.mean(auc['min_q']):.2f} (min_q) / {np.mean(auc['min_step']):.2f} (min_step) / "
            f"{np.mean(auc['last']):.2f} (last, the sequence reward), over the {len(auc['min_q'])} "
            f"problems that have both. Candidates that skip the steps (a guessed `\\boxed{{}}`, "
            f"{len(skipped)} of {len(skipped) + len(worked)}) average a sequence reward of "
            f"{np.mean(skipped):.2f}, worked solutions {np.mean(worked):.2f}. Among worked solutions "
            f"alone the ordering probability (min_q) is {np.mean(worked_auc):.2f}."]


def main() -> int:
    from primekit import toy

    work = cache_dir() / "bon-toy-benchmark" / toy.policy_path().name  # one folder per toy policy
    prm = ensure_toy_prm()
    started = time.perf_counter()
    candidates = sample_candidates(
        SampleArguments(out=str(work / "candidates.jsonl"), benchmark="toy", limit=NUM_PROBLEMS),
        sampling=SamplingArguments(n=N, max_new_tokens=64), load=LoadArguments(dtype="float32", batch_size=256),
        show_progress=False)
    sampled = time.perf_counter()
    result = run_rerank(RerankArguments(input=str(candidates), out=str(work / "out")),
                        PRMReadingArguments(prm=str(prm), aggregate=",".join(AGGREGATES)),
                        LoadArguments(dtype="float32", batch_size=64), show_progress=False)
    scored = time.perf_counter()
    shutil.copy(work / "out" / "curve.png", RESULTS / "bon_toy.png")
    curves, summary = result.curves, result.summary
    record = read_prm_record(prm)

    def bon(how: str) -> str:
        return f"bon/implicit_prm/{how}"

    lines = [
        "## Best-of-N in the toy world (toy implicit PRM)", "",
        f"`{COMMAND}`, run under the shared CPU lock (no other locked job ran alongside). The toy "
        f"policy samples {N} candidates at temperature 1 for each of the first {NUM_PROBLEMS} toy "
        f"test problems; the toy implicit PRM (`prime-prm train` without options, saved in `{prm}`, "
        f"read at its recorded coef {record.coef:g}, step mode {record.step_mode}, the problem through its chat "
        "template) scores them. Accuracy in %, [95% percentile-bootstrap interval over problems]; "
        "N < 16 averages 256 random N-subsets per problem (the same subsets for every rule); ties "
        "count as the expected accuracy of a uniform tie-break. Each weighted vote weighs a "
        "candidate by the sigmoid of the score it is ranked by.", "",
        report.markdown_table(summary, result.methods, result.ns), "",
        f"Paired differences at N={N} (bootstrap over problems of the per-problem difference):", "",
        *[f"- PRM BoN ({how}) - single sample: {_signed(paired_difference(curves, bon(how), 'random', N))}"
          for how in AGGREGATES],
        f"- PRM BoN (min_q) - PRM BoN (min_step): "
        f"{_signed(paired_difference(curves, bon('min_q'), bon('min_step'), N))}",
        f"- PRM BoN (min_q) - majority vote: {_signed(paired_difference(curves, bon('min_q'), 'majority', N))}",
        f"- PRM weighted vote (min_q) - majority vote: "
        f"{_signed(paired_difference(curves, 'vote/implicit_prm/min_q', 'majority', N))}", "",
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
