"""Best-of-N candidate files: the two layouts we read, and the one we write.

**Standard layout** (what ``prime-bon sample`` writes and ``prime-bon rerank`` reads), one JSON
object per problem:

* ``problem`` (str, required): the problem text;
* ``candidates`` (non-empty list of str, required): the N sampled responses;
* ``answer`` (str or number, optional): the gold answer, needed to grade candidates;
* ``id`` (str or int, optional, default: the line number);
* ``prompt`` (str, optional): the exact text the policy was prompted with; a reward model reads it
  with ``--prm_context prompt`` (by default it reads ``problem`` through its own chat template);
* ``preds`` (list of str or null, optional): already extracted final answers, one per candidate;
* ``correct`` (list of bool, optional): already known correctness, one per candidate;
* ``scores`` (list of numbers, optional): precomputed reward-model scores, one per candidate,
  usable as the ``shipped`` scorer.

**Qwen2.5-Math RM@N layout** (``math_cot_100.jsonl`` of Qwen's ``rm_maj_eval.py``, shipped as
``bon/qwen25math_math_cot_100.jsonl``), detected by its ``question`` + ``gt`` + ``code`` fields:
``question`` -> problem, ``code`` (or ``response``) -> candidates, ``gt`` -> answer, ``idx`` -> id,
``pred`` -> preds, ``score`` -> correct, ``pred_score`` (one-element lists) -> scores.

**prime-eval run samples** (one graded sample per line) convert with :func:`problems_from_samples`;
:meth:`BonProblem.to_record` writes the standard layout (``prime-bon sample`` writes its output
that way, and ``reranked.jsonl`` is the standard layout plus scores and selections).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Real
from typing import Any

from primekit.errors import InputError
from primekit.io import Record, iter_jsonl, require_field
from primekit.problems import answer_text

QWEN_LAYOUT_FIELDS = ("question", "gt", "code")


@dataclass
class BonProblem:
    """One problem with its N candidate responses, in the standard layout."""

    id: str
    problem: str
    candidates: list[str]
    answer: str | None = None
    prompt: str | None = None
    preds: list[str | None] | None = None
    correct: list[bool] | None = None
    scores: list[float] | None = None

    def to_record(self) -> Record:
        record: Record = {"id": self.id, "problem": self.problem}
        if self.prompt is not None:
            record["prompt"] = self.prompt
        if self.answer is not None:
            record["answer"] = self.answer
        record["candidates"] = self.candidates
        for name in ("preds", "correct", "scores"):
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        return record


def is_qwen_layout(record: Record) -> bool:
    return all(name in record for name in QWEN_LAYOUT_FIELDS)


def _gold(value: Any, path, line, field) -> str | None:
    """Gold answers arrive as strings or JSON numbers (AMC's ``27.0``); keep them as text, the way
    the benchmarks do (:func:`primekit.problems.answer_text`)."""

    if value is None:
        return None
    try:
        return answer_text(value)
    except ValueError as err:
        raise InputError(str(err), path=path, line=line, field=field) from None


def _per_candidate(record: Record, field: str, count: int, kinds: tuple[type, ...], path, line,
                   *, allow_none: bool = False) -> list | None:
    """An optional list with one entry per candidate, every entry of one of ``kinds``."""
    if record.get(field) is None:
        return None
    values = require_field(record, field, path=path, line=line, kind=list)
    if len(values) != count:
        raise InputError(f"has {len(values)} entries for {count} candidates",
                         path=path, line=line, field=field)
    for index, value in enumerate(values):
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if (value is None and not allow_none) or (value is not None and (
                wrong_bool or not isinstance(value, kinds))):
            expected = " or ".join("number" if k is Real else k.__name__ for k in kinds)
            raise InputError(f"expected {expected}, got {type(value).__name__}",
                             path=path, line=line, field=f"{field}[{index}]")
    return values


def _candidates(record: Record, field: str, path, line) -> list[str]:
    candidates = require_field(record, field, path=path, line=line, kind=list)
    if not candidates:
        raise InputError("empty list: there is nothing to rerank", path=path, line=line, field=field)
    for index, candidate in enumerate(candidates):
        if not isinstance(candidate, str):
            raise InputError(f"expected str, got {type(candidate).__name__}",
                             path=path, line=line, field=f"{field}[{index}]")
    return candidates


def _flatten_qwen_scores(record: Record, count: int, path, line) -> list[float] | None:
    """``pred_score`` holds one one-element list per candidate (Qwen's RM output shape)."""
    raw = _per_candidate(record, "pred_score", count, (list, Real), path, line)
    if raw is None:
        return None
    scores = []
    for index, value in enumerate(raw):
        if isinstance(value, list):
            if len(value) != 1 or isinstance(value[0], bool) or not isinstance(value[0], Real):
                raise InputError("expected a one-element list holding a number",
                                 path=path, line=line, field=f"pred_score[{index}]")
            value = value[0]
        scores.append(float(value))
    return scores


def parse_record(record: Record, *, path: str | os.PathLike | None = None,
                 line: int | None = None) -> BonProblem:
    """A :class:`BonProblem` from either layout; every defect names file, line and field."""
    qwen = is_qwen_layout(record)
    problem_field, candidates_field = ("question", "code") if qwen else ("problem", "candidates")
    problem = require_field(record, problem_field, path=path, line=line, kind=str)
    candidates = _candidates(record, candidates_field, path, line)
    count = len(candidates)
    raw_id = record.get("idx" if qwen else "id", line)
    if qwen:
        return BonProblem(
            id=str(raw_id), problem=problem, candidates=candidates,
            answer=_gold(record.get("gt"), path, line, "gt"),
            preds=_per_candidate(record, "pred", count, (str,), path, line, allow_none=True),
            correct=_per_candidate(record, "score", count, (bool,), path, line),
            scores=_flatten_qwen_scores(record, count, path, line))
    prompt = record.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"expected str, got {type(prompt).__name__}", path=path, line=line,
                         field="prompt")
    scores = _per_candidate(record, "scores", count, (Real,), path, line)
    return BonProblem(
        id=str(raw_id), problem=problem, candidates=candidates, prompt=prompt,
        answer=_gold(record.get("answer"), path, line, "answer"),
        preds=_per_candidate(record, "preds", count, (str,), path, line, allow_none=True),
        correct=_per_candidate(record, "correct", count, (bool,), path, line),
        scores=None if scores is None else [float(s) for s in scores])


def problems_from_samples(records: Iterable[Record], n: int | None = None,
                          problem_texts: dict[str, str] | None = None) -> list[BonProblem]:
    """Group the per-sample records of a ``prime-eval run`` folder (``problem_id``,
    ``sample_index``, ``prompt``, ``completion``, ``answer``, ``pred``, ``correct``) into one
    problem each, keeping the first ``n`` samples in sample order (all when ``n`` is None).

    ``problem_texts`` maps problem ids to their text; without it the prompt stands in.
    """
    by_problem: dict[str, dict[int, Record]] = {}
    for record in records:
        by_problem.setdefault(str(record["problem_id"]), {})[int(record["sample_index"])] = record
    problems = []
    for problem_id, samples in by_problem.items():
        ordered = [samples[index] for index in sorted(samples)][:n]
        if n is not None and len(ordered) < n:
            raise InputError(f"problem '{problem_id}' has {len(ordered)} samples, fewer than {n}")
        first = ordered[0]
        problems.append(BonProblem(
            id=problem_id, problem=(problem_texts or {}).get(problem_id, first["prompt"]),
            prompt=first["prompt"], answer=first.get("answer"),
            candidates=[r["completion"] for r in ordered], preds=[r.get("pred") for r in ordered],
            correct=[bool(r["correct"]) for r in ordered]))
    return problems


def load_problems(path: str | os.PathLike) -> list[BonProblem]:
    """Every problem of a candidates file (either layout, detected per record)."""
    problems: list[BonProblem] = []
    first_line: dict[str, int] = {}
    for line, record in iter_jsonl(path):
        problem = parse_record(record, path=path, line=line)
        if problem.id in first_line:
            raise InputError(f"duplicate id '{problem.id}' (first on line {first_line[problem.id]})",
                             path=path, line=line, field="id")
        first_line[problem.id] = line
        problems.append(problem)
    if not problems:
        raise InputError("no problems in the file", path=path)
    return problems
