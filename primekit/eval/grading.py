"""Grading model outputs for ``prime-eval run`` and ``prime-eval grade``: a protocol's answer
extraction with primekit's grader, a published grader's own code, or (for code benchmarks) the
tests in sandboxes; several graders at once; and reading a file of model outputs to grade.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from primekit.errors import InputError
from primekit.eval.code_benchmarks import CodeGrader
from primekit.eval.protocols import get_protocol
from primekit.eval.published import PublishedGrader
from primekit.io import iter_jsonl, require_field
from primekit.problems import answer_text, code_answer, is_code_benchmark
from primekit.verifiers.math import grade_answers

__all__ = ["all_graders", "grade_responses", "grader_for", "read_outputs"]


def grade_responses(responses: Sequence[str], golds: Sequence[str], processes: int | None = None,
                    *, protocol: str = "primekit", benchmark: str = ""
                    ) -> list[tuple[str | None, bool]]:
    """Extracted answer and correctness of each response: the protocol's answer extraction, then
    the project grader's verdict on what it extracted."""
    extractions = [get_protocol(protocol).extract(response, benchmark) for response in responses]
    correct = grade_answers([(e.graded, gold) for e, gold in zip(extractions, golds, strict=True)],
                            processes=processes)
    return [(e.answer, bool(ok)) for e, ok in zip(extractions, correct)]


def grader_for(name: str, protocol: str, grader: str = "primekit", processes: int | None = None):
    """The grade function of a benchmark, as a context manager: code benchmarks run their answers'
    programs in sandboxes (ended when the block ends); math ones use the protocol's extraction and
    primekit's grader, or a published grader's own code in its worker (ended with the block)."""
    if is_code_benchmark(name):
        return CodeGrader()
    if grader != "primekit":
        return PublishedGrader(grader, name)
    return contextlib.nullcontext(lambda responses, golds: grade_responses(
        responses, golds, processes=processes, protocol=protocol, benchmark=name))


@contextlib.contextmanager
def all_graders(name: str, protocol: str, graders: list[str], processes: int | None = None):
    """One grade function for all ``graders``: the first one's (extracted, correct), and with
    more than one, every grader's verdict in the sample's ``verdicts``."""
    with contextlib.ExitStack() as stack:
        functions = [stack.enter_context(grader_for(name, protocol, grader, processes)) for grader in graders]
        if len(functions) == 1:
            yield functions[0]
            return

        def grade_all(responses, golds):
            results = [function(responses, golds) for function in functions]
            return [(*verdicts[0], {"verdicts": {grader: {"pred": pred, "correct": bool(correct)}
                                                 for grader, (pred, correct) in zip(graders, verdicts)}})
                    for verdicts in zip(*results, strict=True)]

        yield grade_all


def _responses(record: dict[str, Any], field_name: str, path: str, line: int) -> list[str]:
    value = require_field(record, field_name, path=path, line=line, kind=(str, list))
    values = [value] if isinstance(value, str) else value
    if not values or not all(isinstance(item, str) for item in values):
        raise InputError("expected a string or a non-empty list of strings", path=path, line=line,
                         field=field_name)
    return values


def read_outputs(path: str | Path, *, response_field: str, answer_field: str, id_field: str | None = None,
                 benchmark_field: str | None = None) -> list[dict[str, Any]]:
    """Flatten a file of model outputs into sample records (benchmark, problem_id, sample_index,
    completion, answer), numbering the samples of each problem in file order. Fields as in
    ``prime-eval grade --help``: ``id_field`` None tries problem_id, id and idx, then the line
    number; ``benchmark_field`` None takes ``benchmark`` if present, else the file name."""
    path = Path(path)
    counts: dict[tuple[str, str], int] = {}
    records = []
    for line, record in iter_jsonl(path):
        if benchmark_field:
            benchmark = str(require_field(record, benchmark_field, path=path, line=line))
        else:
            benchmark = str(record.get("benchmark") or path.stem)
        record_id_field = id_field or next((f for f in ("problem_id", "id", "idx") if f in record), None)
        problem_id = str(require_field(record, record_id_field, path=path, line=line)
                         if record_id_field else line)
        if is_code_benchmark(benchmark):  # the tests come from the benchmark
            gold = code_answer(benchmark, problem_id, path=path, line=line)
        else:
            try:
                gold = answer_text(require_field(record, answer_field, path=path, line=line))
            except ValueError as err:
                raise InputError(str(err), path=path, line=line, field=answer_field) from None
        for response in _responses(record, response_field, path=str(path), line=line):
            index = counts.get((benchmark, problem_id), 0)
            counts[(benchmark, problem_id)] = index + 1
            sample = {"benchmark": benchmark, "problem_id": problem_id, "sample_index": index,
                      "completion": response, "answer": gold, "source_line": line}
            if isinstance(record.get("finished"), bool):
                sample["finished"] = record["finished"]
            records.append(sample)
    if not records:
        raise InputError("no records to grade", path=path)
    return records
