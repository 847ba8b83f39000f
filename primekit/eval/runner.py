"""Run-folder summaries behind ``prime-eval run`` and ``prime-eval grade``: metrics per benchmark
(``summary.json``, rewritten atomically at the end) and each problem's score. Filling the folder's
samples is :mod:`primekit.sampling`; grading them, :mod:`primekit.eval.grading`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from primekit.errors import InputError
from primekit.io import atomic_write_json, read_text
from primekit.sampling import open_samples
from primekit.statistics import Equivalent, default_ks, interval, summarize

SUMMARY_FILE = "summary.json"


def benchmark_summary(problem_ids: Sequence[str], records: Sequence[dict[str, Any]], n: int | None,
                      *, ks: Sequence[int] | None = None, equivalent: Equivalent | None = None,
                      confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
                      ) -> dict[str, Any]:
    """Metrics of one benchmark from its graded sample records.

    Only the first ``n`` samples of each listed problem count (``None``: all of them), so a run
    folder that once held more samples, or more problems, still reports what was asked.
    """
    by_problem: dict[str, dict[int, dict[str, Any]]] = {str(pid): {} for pid in problem_ids}
    for record in records:
        samples_of = by_problem.get(str(record["problem_id"]))
        if samples_of is not None and (n is None or record["sample_index"] < n):
            samples_of[int(record["sample_index"])] = record
    ordered = [[samples_of[index] for index in sorted(samples_of)] for samples_of in by_problem.values()]
    if not ordered or any(not samples_of for samples_of in ordered):
        raise InputError("some problems have no graded samples yet; run the command again to "
                         "finish them")
    fewest = min(len(samples_of) for samples_of in ordered)
    usable_ks = [k for k in (ks or default_ks(fewest)) if k <= fewest] or [1]
    metrics = summarize([[bool(r["correct"]) for r in s] for s in ordered],
                        [[r.get("pred") for r in s] for s in ordered], usable_ks,
                        equivalent=equivalent, confidence=confidence, n_resamples=n_resamples,
                        seed=seed)
    flat = [record for samples_of in ordered for record in samples_of]
    with_finish = [record for record in flat if "finished" in record]
    summary = {
        "num_problems": len(ordered),
        "samples_per_problem": fewest,
        "no_answer_rate": sum(record.get("pred") is None for record in flat) / len(flat),
        "truncated_rate": (sum(not record["finished"] for record in with_finish) / len(with_finish)
                           if with_finish else None),
        "context_truncated_rate": (sum(record.get("truncated") == "context" for record in with_finish)
                                   / len(with_finish) if with_finish else None),
        "metrics": {name: value.to_json() for name, value in metrics.items()},
    }
    for key in ("level", "subject"):
        groups = _breakdown(ordered, key, confidence=confidence, n_resamples=n_resamples, seed=seed)
        if groups:
            summary[f"by_{key}"] = groups
    return summary


def problem_scores(samples_of_problems: Sequence[Sequence[dict[str, Any]]]) -> list[float]:
    """pass@1 of each problem: the fraction of its samples that are right."""
    return [sum(bool(r["correct"]) for r in samples) / len(samples)
            for samples in samples_of_problems]


def _breakdown(ordered: list[list[dict[str, Any]]], key: str, **interval_options: Any
               ) -> dict[str, dict[str, Any]]:
    """pass@1 with its interval for each value of ``key`` (level or subject) the samples carry."""
    groups: dict[str, list[list[dict[str, Any]]]] = {}
    for samples in ordered:
        if samples[0].get(key) is not None:
            groups.setdefault(str(samples[0][key]), []).append(samples)
    result = {}
    for name in sorted(groups):
        scores = problem_scores(groups[name])
        low, high, method = interval(scores, **interval_options)
        result[name] = {"num_problems": len(scores), "pass@1": sum(scores) / len(scores),
                        "ci_low": low, "ci_high": high, "ci": method}
    return result


def run_problem_scores(run_dir: str | Path) -> dict[str, dict[str, float]]:
    """pass@1 of every problem of a finished run folder, per benchmark, from its samples (the
    first ``samples_per_problem`` of each problem, as its summary counted them)."""
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise InputError("no summary here (run `prime-eval run` first)", path=summary_path)
    summary = json.loads(read_text(summary_path))
    records = open_samples(run_dir).records.values()
    scores: dict[str, dict[str, float]] = {}
    for name, entry in summary.get("benchmarks", {}).items():
        n = entry.get("samples_per_problem")
        by_problem: dict[str, list[bool]] = {}
        for record in records:
            if record["benchmark"] == name and (n is None or record["sample_index"] < n):
                by_problem.setdefault(str(record["problem_id"]), []).append(bool(record["correct"]))
        scores[name] = {pid: sum(c) / len(c) for pid, c in by_problem.items()}
    return scores


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / SUMMARY_FILE
    atomic_write_json(path, summary)
    return path
