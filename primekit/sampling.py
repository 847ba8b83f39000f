"""Resumable sampling into a run folder: generate and grade only the samples that are missing.

A run folder holds ``samples.jsonl`` (one graded sample per line, keyed by benchmark, problem id
and sample index, appended as soon as its chunk is graded) and ``settings.json`` (what the samples
were generated with). A killed run keeps every finished chunk; running the same command again
generates only the samples that are missing, so no finished sample is ever generated twice.
``prime-eval run`` and ``prime-bon sample`` both fill their folders this way.
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
from primekit.generation import Completion, SamplingSpec
from primekit.io import ResumableJsonl, atomic_write_json
from primekit.problems import BenchmarkProblem, breakdown
from primekit.verifiers.math import grade_answers, parse

SAMPLES_FILE = "samples.jsonl"
SETTINGS_FILE = "settings.json"

# grade(responses, golds) -> (extracted answer or None, correct[, extra fields]) per response
GradeFn = Callable[[Sequence[str], Sequence[str]], list[tuple[str | None, bool]]]


class Generator(Protocol):
    def generate(self, prompts: Sequence[str], spec: SamplingSpec) -> list[list[Completion]]: ...


def grade_math(responses: Sequence[str], golds: Sequence[str], processes: int | None = None
               ) -> list[tuple[str | None, bool]]:
    """Extracted answer and correctness of each response under primekit's own rule: the math
    verifier's answer extraction, then its verdict on what it extracted (the default grade)."""
    answers = [parse(response) for response in responses]
    correct = grade_answers(zip(answers, golds, strict=True), processes=processes)
    return [(answer, bool(ok)) for answer, ok in zip(answers, correct)]


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
                       grade: GradeFn = grade_math, chunk_size: int = 64,
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
                  grade: GradeFn = grade_math, chunk_size: int = 256,
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
