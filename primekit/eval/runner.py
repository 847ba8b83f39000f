"""The resumable generate-and-grade loop behind ``prime-eval run`` and ``prime-eval grade``.

A run folder holds ``samples.jsonl`` (one graded sample per line, keyed by benchmark, problem id
and sample index, appended as soon as its chunk is graded), ``settings.json`` (what the samples
were generated with) and ``summary.json`` (metrics per benchmark, rewritten atomically at the
end). A killed run keeps every finished chunk; running the same command again generates only the
samples that are missing, so no finished sample is ever generated twice.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from primekit.errors import InputError
from primekit.eval.benchmarks import BenchmarkProblem, breakdown
from primekit.eval.generate import Completion, SamplingSpec
from primekit.eval.metrics import Equivalent, default_ks, interval, summarize
from primekit.io import ResumableJsonl, atomic_write_json

SAMPLES_FILE = "samples.jsonl"
SETTINGS_FILE = "settings.json"
SUMMARY_FILE = "summary.json"

# grade(responses, golds) -> (extracted answer or None, correct[, extra fields]) per response
GradeFn = Callable[[Sequence[str], Sequence[str]], list[tuple[str | None, bool]]]


class Generator(Protocol):
    def generate(self, prompts: Sequence[str], spec: SamplingSpec) -> list[list[Completion]]: ...


def grade_responses(responses: Sequence[str], golds: Sequence[str], processes: int | None = None,
                    *, protocol: str = "primekit", benchmark: str = ""
                    ) -> list[tuple[str | None, bool]]:
    """Extracted answer and correctness of each response: the protocol's answer extraction, then
    the project grader's verdict on what it extracted."""
    from primekit.verifiers.math import grade_answers
    from primekit.eval.protocols import get_protocol

    extractions = [get_protocol(protocol).extract(response, benchmark) for response in responses]
    correct = grade_answers([(e.graded, gold) for e, gold in zip(extractions, golds, strict=True)],
                            processes=processes)
    return [(e.answer, bool(ok)) for e, ok in zip(extractions, correct)]


def sample_key(record: dict[str, Any]) -> str:
    """The identity of a sample: benchmark, problem id and sample index."""
    return json.dumps([record["benchmark"], str(record["problem_id"]), int(record["sample_index"])])


def open_samples(run_dir: str | Path) -> ResumableJsonl:
    return ResumableJsonl(Path(run_dir) / SAMPLES_FILE, key=sample_key)


def check_settings(run_dir: str | Path, settings: dict[str, Any]) -> None:
    """Refuse to add samples to a run folder made with different settings (mixing them would
    silently corrupt every metric); record the settings of a new run.

    ``settings`` may hold a ``benchmarks`` mapping of per-benchmark settings: a benchmark the
    folder already has must match, a new one is added."""
    path = Path(run_dir) / SETTINGS_FILE
    merged = dict(settings)
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        for key, value in settings.items():
            if key == "benchmarks" and isinstance(previous.get(key), dict):
                for name, wanted in value.items():
                    had = previous[key].get(name)
                    if had is not None and had != wanted:
                        changed = next(k for k in {**had, **wanted} if had.get(k) != wanted.get(k))
                        raise InputError(
                            f"this run folder's {name} samples were made with {changed}="
                            f"{had.get(changed)!r}, not {wanted.get(changed)!r}; choose a new "
                            "--out to change it", path=path)
                merged[key] = {**previous[key], **value}
            elif key in previous and previous[key] != value:
                raise InputError(f"this run folder was made with {key}={previous[key]!r}, not "
                                 f"{value!r}; choose a new --out to change it", path=path)
    atomic_write_json(path, merged)


def missing_samples(problems: Sequence[BenchmarkProblem], n: int, done: set[str]
                    ) -> list[tuple[BenchmarkProblem, list[int]]]:
    """For each problem that still lacks some of its ``n`` samples, the indices it lacks."""
    missing = []
    for problem in problems:
        indices = [index for index in range(n) if sample_key(
            {"benchmark": problem.benchmark, "problem_id": problem.id, "sample_index": index})
            not in done]
        if indices:
            missing.append((problem, indices))
    return missing


def chunk_seed(seed: int, problem: BenchmarkProblem, first_index: int) -> int:
    """A seed that depends on where a chunk starts, so a resumed chunk does not replay the random
    stream of the chunk before it, and the same command gives the same chunks' seeds again."""
    tag = f"{problem.benchmark}\t{problem.id}\t{first_index}".encode()
    return (seed + zlib.crc32(tag)) % (2**31)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def generate_and_grade(problems: Sequence[BenchmarkProblem], prompts: dict[str, str],
                       generator: Generator, spec: SamplingSpec, samples: ResumableJsonl, *,
                       grade: GradeFn = grade_responses, chunk_size: int = 64,
                       show_progress: bool = True) -> int:
    """Generate and grade every missing sample of ``problems`` (``spec.n`` per problem), a chunk
    of ``chunk_size`` problems at a time, appending each graded chunk to ``samples``. ``prompts``
    maps problem id to the rendered prompt. Returns how many samples were generated."""
    missing = missing_samples(problems, spec.n, samples.done)
    total = sum(len(indices) for _, indices in missing)
    name = problems[0].benchmark if problems else ""
    with tqdm(total=total, desc=f"{name} samples", unit="sample", disable=not show_progress) as bar:
        for chunk in _chunks(missing, max(1, chunk_size)):
            # problems missing the same number of samples share one generate call
            by_count: dict[int, list[tuple[BenchmarkProblem, list[int]]]] = {}
            for problem, indices in chunk:
                by_count.setdefault(len(indices), []).append((problem, indices))
            records = []
            for count, group in by_count.items():
                first_problem, first_indices = group[0]
                call_spec = dataclasses.replace(
                    spec, n=count, seed=chunk_seed(spec.seed, first_problem, first_indices[0]))
                outputs = generator.generate([prompts[p.id] for p, _ in group], call_spec)
                for (problem, indices), completions in zip(group, outputs, strict=True):
                    records += [_sample_record(problem, prompts[problem.id], index, completion)
                                for index, completion in zip(indices, completions, strict=True)]
            _grade_into(records, samples, grade)
            bar.update(len(records))
    return total


def _sample_record(problem: BenchmarkProblem, prompt: str, index: int,
                   completion: Completion) -> dict[str, Any]:
    record = {"benchmark": problem.benchmark, "problem_id": problem.id, "sample_index": index,
              "prompt": prompt, "completion": completion.text, "finished": completion.finished,
              "num_tokens": completion.num_tokens, "answer": problem.answer, **breakdown(problem)}
    if completion.truncated is not None:
        record["truncated"] = completion.truncated  # "context": cut at the model's context
    return record


def _grade_into(records: list[dict[str, Any]], samples: ResumableJsonl, grade: GradeFn) -> None:
    graded = grade([r["completion"] for r in records], [r["answer"] for r in records])
    for record, (pred, correct, *extra) in zip(records, graded, strict=True):
        # a grade function may add fields (each grader's verdict when several judge)
        samples.append({**record, "pred": pred, "correct": bool(correct), **(extra[0] if extra else {})})


def grade_pending(records: Sequence[dict[str, Any]], samples: ResumableJsonl, *,
                  grade: GradeFn = grade_responses, chunk_size: int = 256,
                  show_progress: bool = True) -> int:
    """Grade the ``records`` (each with benchmark, problem_id, sample_index, completion and
    answer) that ``samples`` does not hold yet, a chunk at a time. Returns how many were graded."""
    done = samples.done
    pending = [record for record in records if sample_key(record) not in done]
    with tqdm(total=len(pending), desc="grade", unit="sample", disable=not show_progress) as bar:
        for chunk in _chunks(pending, max(1, chunk_size)):
            _grade_into(chunk, samples, grade)
            bar.update(len(chunk))
    return len(pending)


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
    from primekit.io import read_text

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
