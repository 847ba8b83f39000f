r"""The benchmark catalogue: math and code benchmarks as one record type.

Each public benchmark file stores its problem and gold answer under different fields and in
different shapes (GSM8K's answer is a worked solution ending in ``#### 18``, OlympiadBench's is a
list of ``$...$`` strings, AMC's is a float such as ``27.0``, AIME's may be zero-padded
``"025"``). :func:`load_benchmark` turns any of them — a registered name, a local JSONL/JSON
file, or a ``datasets`` name — into :class:`BenchmarkProblem` records with a plain-text gold
answer, so the rest of the evaluation never looks at the source format again.

Code benchmarks (HumanEval, MBPP, LeetCode) are :class:`BenchmarkProblem` records too: the
``problem`` is the user question PRIME builds for the benchmark and the ``answer`` names the tests
(``{"tests": "humaneval", "id": "HumanEval/0"}``), so sample files stay small and the code grader
looks the row up again (:func:`code_row`).

The registered files live under ``primekit.paths.data_dir()/benchmarks`` (see the data README).
``aime2024`` and ``amc`` are PRIME's own variants: the 2024 rows of the AI-MO AIME validation
set and all 83 rows of the AI-MO AMC validation set.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from primekit.errors import InputError
from primekit.io import iter_jsonl, read_json_or_jsonl, require_field
from primekit.paths import data_dir
from primekit.verifiers.code.formats import _string_list


@dataclass(frozen=True)
class BenchmarkProblem:
    """One problem: ``answer`` is the gold answer as text, ready for the grader."""

    id: str
    problem: str
    answer: str
    benchmark: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


# ----------------------------------------------------------------------------------------------
# gold-answer formats (pure; each turns one source format into answer text)

_PADDED_INTEGER = re.compile(r"[+-]?0+\d+")
_GROUPED_NUMBER = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def answer_text(value: Any) -> str:
    """A JSON gold answer as text: ``27.0`` -> ``"27"``, ``"025"`` -> ``"25"``, ``"1,600"`` ->
    ``"1600"``; other strings are only stripped. Raises ``ValueError`` for anything that is not a
    string or a finite number (including booleans, lists and empty strings)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a string or a number, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        raise ValueError("empty answer")
    if _PADDED_INTEGER.fullmatch(text):
        return str(int(text))
    if _GROUPED_NUMBER.fullmatch(text):
        return text.replace(",", "")
    return text


def gsm8k_answer(solution: Any) -> str:
    """The final answer of a GSM8K worked solution: the text after its last ``####``."""
    if not isinstance(solution, str) or "####" not in solution:
        raise ValueError("expected a worked solution ending in '#### <answer>'")
    return answer_text(solution.rsplit("####", 1)[1])


def dollar_answer(value: Any) -> str:
    """A LaTeX answer written inside ``$...$`` (College Math, Gaokao 2023 En: ``"$10-4 n$"``),
    without its unescaped dollar signs (Qwen2.5-Math's ``parse_ground_truth`` removes every ``$``,
    escaped ones too: parser.py:620).

    An empty answer stays empty (two Gaokao 2023 En rows upstream have one; their answer sits in
    the question text), which keeps the problem count of published numbers. primekit's grader
    never grades such a problem right; Qwen's harness does whenever the response holds no capital
    A-E (its multiple-choice step takes the empty gold for a choice of no letters: ``--grader
    qwen`` grades it so)."""
    if not isinstance(value, str):
        return answer_text(value)
    text = _UNESCAPED_DOLLAR.sub("", value).strip()
    return answer_text(text) if text else ""


def latex_list_answer(answers: Any) -> str:
    """OlympiadBench's ``final_answer``: a one-element list such as ``["$69$,$84$"]``.

    Qwen2.5-Math's evaluator uses ``final_answer[0].strip("$")``, which leaves ``69$,$84`` for
    the 94 multiple-answer rows; removing every unescaped ``$`` gives ``69,84`` instead.
    """
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not isinstance(answers[0], str):
        raise ValueError("expected a non-empty list of answer strings")
    return answer_text(_UNESCAPED_DOLLAR.sub("", answers[0]))


# ----------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class BenchmarkSource:
    """Where a registered benchmark lives and how to read its rows."""

    title: str
    relative_path: str
    problem_field: str
    answer_field: str
    id_field: str | None  # None: the row number
    answer_format: Callable[[Any], str] = answer_text
    keep_row: Callable[[dict[str, Any]], bool] | None = None
    level_field: str | None = None  # difficulty level, for the per-level breakdown
    subject_field: str | None = None  # subject / topic, for the per-subject breakdown


def _is_aime_2024(row: dict[str, Any]) -> bool:
    return bool(re.search(r"2024_AIME_(I|II)_", str(row.get("url", ""))))


REGISTRY: dict[str, BenchmarkSource] = {
    "aime2024": BenchmarkSource("AIME 2024", "benchmarks/aimo_validation_aime/test.jsonl",
                                "question", "answer", "id", keep_row=_is_aime_2024),
    "math500": BenchmarkSource("MATH-500", "benchmarks/math500/test.jsonl",
                               "problem", "expected_answer", "id", level_field="level",
                               subject_field="type"),
    # its "id" restarts for each year, so the row number is the id
    "amc": BenchmarkSource("AMC", "benchmarks/aimo_validation_amc/test.jsonl",
                           "question", "answer", None),
    "minerva_math": BenchmarkSource("Minerva Math", "benchmarks/minerva_math/test.jsonl",
                                    "problem", "answer", "idx", subject_field="type"),
    "olympiadbench": BenchmarkSource("OlympiadBench", "benchmarks/olympiadbench/test.jsonl",
                                     "question", "final_answer", "id",
                                     answer_format=latex_list_answer, subject_field="subfield"),
    "aime24": BenchmarkSource("AIME24", "benchmarks/aime24/test.jsonl", "problem", "answer", "id"),
    "amc23": BenchmarkSource("AMC23", "benchmarks/amc23/test.jsonl", "problem", "answer", "id"),
    "gsm8k": BenchmarkSource("GSM8K", "benchmarks/gsm8k/test.jsonl", "question", "answer", "idx",
                             answer_format=gsm8k_answer),
    # its question_number repeats across source books, so the row number is the id
    "college_math": BenchmarkSource("College Math", "benchmarks/college_math/test.jsonl",
                                    "question", "answer", None, answer_format=dollar_answer,
                                    subject_field="data_topic"),
    # neither its "source" nor its "id" is unique (or always there): the row number is the id
    "gaokao2023en": BenchmarkSource("Gaokao 2023 En", "benchmarks/gaokao2023en/test.jsonl",
                                    "question", "answer", None, answer_format=dollar_answer),
}
TOY = "toy"
# PRIME's five math benchmarks, in the order of its results table.
PRIME_BENCHMARKS = ("aime2024", "math500", "amc", "minerva_math", "olympiadbench")


def benchmark_title(name: str) -> str:
    """Display name for reports (``math500`` -> ``MATH-500``); unknown names pass through."""
    if name == TOY:
        return "Toy arithmetic"
    if name in CODE_BENCHMARKS:
        return CODE_BENCHMARKS[name].title
    return REGISTRY[name].title if name in REGISTRY else name


def benchmark_names() -> list[str]:
    return [*REGISTRY, *CODE_BENCHMARKS, TOY]


# ----------------------------------------------------------------------------------------------
# code benchmarks: the problem is PRIME's user question, the answer names the tests

@dataclass(frozen=True)
class CodeBenchmark:
    title: str
    relative_path: str
    id_field: str
    question: Callable[[dict[str, Any]], str]
    reference_field: str | None  # reference solution, for check-references


def _humaneval_question(row: dict[str, Any]) -> str:
    match = re.search(rf"def\s+({re.escape(row['entry_point'])}.*?):\s*\n", row["prompt"])
    if match is None:
        raise InputError("no 'def <entry_point>' line in the prompt", field="prompt",
                         path=str(row.get("task_id", "")) or None)
    return (f"Write Python code to solve the task.\nWrite a Python function `{match.group(1)}` to solve the "
            f"following problem: Present code in ```python```\n```python\n{row['prompt']}\n```\n")


def _mbpp_signature(code: str) -> str:
    line = next((line for line in code.split("\n") if line.strip().startswith("def ")), None)
    if line is None:
        raise InputError("the reference code defines no function", field="code")
    # PRIME's expression, quirks included: lstrip("def ") strips characters, not a prefix
    return line.lstrip("def ").replace(" ", "").rstrip(":").strip().replace(",", ", ")


def _mbpp_question(row: dict[str, Any]) -> str:
    description = str(row["prompt"]).split(" https://www.")[0]
    first_test = _string_list(row, "test_list")[0]
    return (f"Write Python code to solve the task.\nWrite a Python function `{_mbpp_signature(row['code'])}` to "
            f"solve the following problem: Present code in ```python and ```\n{description}\n"
            f"The code should pass the following test cases:>>> {first_test}\n\n Let's coding step by step.\n")


CODE_BENCHMARKS: dict[str, CodeBenchmark] = {
    "humaneval": CodeBenchmark("HumanEval", "code/humaneval/HumanEval.jsonl.gz", "task_id", _humaneval_question,
                               "canonical_solution"),
    "mbpp": CodeBenchmark("MBPP", "code/mbpp/new_mbpp.json", "task_id", _mbpp_question, "code"),
    "leetcode": CodeBenchmark("LeetCode", "code/leetcode/leetcode-test.json", "task_id",
                              lambda row: str(row["prompt_sft"]), None),
}


def is_code_benchmark(name: str) -> bool:
    return name in CODE_BENCHMARKS


@lru_cache(maxsize=8)
def code_rows(name: str) -> dict[str, dict[str, Any]]:
    """The benchmark's rows by id, read once per process (the grader looks tests up here)."""
    source = CODE_BENCHMARKS[name]
    path = data_dir() / source.relative_path
    if not path.is_file():
        raise InputError(f"benchmark '{name}' is not in the data folder (set PRIMEKIT_DATA)", path=path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=path, line=error.lineno) from None
    by_id: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or source.id_field not in row:
            raise InputError("missing", path=path, line=index + 1, field=source.id_field)
        by_id[str(row[source.id_field])] = row
    return by_id


def load_code_benchmark(name: str) -> list[BenchmarkProblem]:
    """The problems of a registered code benchmark."""
    source = CODE_BENCHMARKS[name]
    return [BenchmarkProblem(id=problem_id, problem=source.question(row), benchmark=name,
                             answer=json.dumps({"tests": name, "id": problem_id}),
                             metadata={"reference": row.get(source.reference_field) if source.reference_field else None})
            for problem_id, row in code_rows(name).items()]


def code_answer(benchmark: str, problem_id: str, path=None, line: int | None = None) -> str:
    """The answer of a row of model outputs for a code benchmark (``prime-eval grade``): it names
    the problem, whose tests come from the benchmark itself; an unknown id is an error naming the
    file and line."""
    if problem_id not in code_rows(benchmark):
        raise InputError(f"no problem '{problem_id}' in {CODE_BENCHMARKS[benchmark].title}", path=path, line=line,
                         field="problem_id")
    return json.dumps({"tests": benchmark, "id": problem_id})


def code_row(gold: str) -> tuple[str, dict[str, Any]]:
    """The benchmark's name and row of the problem a code answer (:func:`code_answer`) names."""
    try:
        reference = json.loads(gold)
        name, problem_id = reference["tests"], str(reference["id"])
        return name, code_rows(name)[problem_id]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"not a code benchmark answer: {gold[:80]!r}") from None


def reference_solution(problem: BenchmarkProblem) -> str | None:
    """The benchmark's own solution of a problem (None for LeetCode, which ships none)."""
    return problem.metadata.get("reference")


# ----------------------------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class FieldNames:
    """Field names for files that are not registered (``None``: the usual names are tried)."""

    problem: str | None = None
    answer: str | None = None
    id: str | None = None


def _pick_field(record: dict[str, Any], chosen: str | None, usual: tuple[str, ...]) -> str:
    if chosen is not None:
        return chosen
    return next((name for name in usual if name in record), usual[0])


def _to_problem(row: dict[str, Any], *, benchmark: str, index: int, problem_field: str,
                answer_field: str, id_field: str | None, answer_format: Callable[[Any], str],
                path: str | None, line: int | None) -> BenchmarkProblem:
    problem = require_field(row, problem_field, path=path, line=line, kind=str)
    raw_answer = require_field(row, answer_field, path=path, line=line)
    try:
        answer = answer_format(raw_answer)
    except ValueError as err:
        raise InputError(str(err), path=path, line=line, field=answer_field) from None
    problem_id = row.get(id_field) if id_field else None
    metadata = {key: value for key, value in row.items() if key not in {problem_field, answer_field}}
    metadata["raw_answer"] = raw_answer
    return BenchmarkProblem(id=str(index if problem_id is None else problem_id), problem=problem,
                            answer=answer, benchmark=benchmark, metadata=metadata)


def breakdown(problem: BenchmarkProblem) -> dict[str, str]:
    """The ``level`` and ``subject`` of a registered benchmark's problem, where it has them
    (``{"level": "Level 5", "subject": "Algebra"}`` for MATH-500), for per-level and per-subject
    reports."""
    source = REGISTRY.get(problem.benchmark)
    if source is None:
        return {}
    found = {"level": source.level_field, "subject": source.subject_field}
    return {key: str(problem.metadata[name]) for key, name in found.items()
            if name is not None and problem.metadata.get(name) not in (None, "")}


def _load_registered(name: str) -> list[BenchmarkProblem]:
    source = REGISTRY[name]
    path = data_dir() / source.relative_path
    if not path.is_file():
        raise InputError(f"benchmark '{name}' is not in the data folder (set PRIMEKIT_DATA)",
                         path=path)
    rows = [(line, row) for line, row in iter_jsonl(path)
            if source.keep_row is None or source.keep_row(row)]
    return [_to_problem(row, benchmark=name, index=index, problem_field=source.problem_field,
                        answer_field=source.answer_field, id_field=source.id_field,
                        answer_format=source.answer_format, path=str(path), line=line)
            for index, (line, row) in enumerate(rows)]


def _load_file(path: Path, fields: FieldNames) -> list[BenchmarkProblem]:
    """A local file; errors name the JSONL line, or the list item (``file.json[3]``) of a JSON file."""
    if path.suffix == ".jsonl":
        located = [(str(path), line, row) for line, row in iter_jsonl(path)]
    else:
        located = [(f"{path}[{index}]", None, row)
                   for index, row in enumerate(read_json_or_jsonl(path))]
    benchmark = path.stem if path.stem != "test" else path.parent.name
    return [_to_problem(row, benchmark=benchmark, index=index, answer_format=answer_text,
                        path=where, line=line, **_usual_fields(row, fields))
            for index, (where, line, row) in enumerate(located)]


def _usual_fields(row: dict[str, Any], fields: FieldNames) -> dict[str, str]:
    return {"problem_field": _pick_field(row, fields.problem, ("problem", "question")),
            "answer_field": _pick_field(row, fields.answer, ("answer", "expected_answer")),
            "id_field": _pick_field(row, fields.id, ("id", "idx", "unique_id"))}


def _load_dataset(name: str, split: str, fields: FieldNames) -> list[BenchmarkProblem]:
    """A ``datasets`` hub name or a local dataset folder (offline runs need a local copy)."""
    import datasets  # heavy: loaded on use, so importing this module stays fast

    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - any loader failure is a bad benchmark name for the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load benchmark '{name}' split '{split}' with datasets: "
                         f"{reason}") from None
    benchmark = Path(name).name or name
    return [_to_problem(row, benchmark=benchmark, index=index, answer_format=answer_text,
                        path=f"{name}[{split}][{index}]", line=None, **_usual_fields(row, fields))
            for index, row in enumerate(rows)]


def _load_toy(limit: int | None) -> list[BenchmarkProblem]:
    from primekit.toy import test_problems  # the toy package loads torch and transformers

    problems = test_problems() if limit is None else test_problems()[:limit]
    return [BenchmarkProblem(id=f"toy-{index}", problem=p.prompt, answer=p.answer, benchmark=TOY,
                             metadata={"solution": p.solution})
            for index, p in enumerate(problems)]


def _looks_like_dataset_name(spec: str) -> bool:
    return "/" in spec or os.sep in spec


def load_benchmark(spec: str, *, fields: FieldNames = FieldNames(), split: str = "test",
                   limit: int | None = None) -> list[BenchmarkProblem]:
    """Problems of ``spec``: a registered name (see :data:`REGISTRY`, plus ``toy``), a local
    ``.jsonl``/``.json`` file, or a ``datasets`` name / local dataset folder. ``limit`` keeps the
    first problems. Unknown names, missing fields and duplicate ids raise :class:`InputError`."""
    if limit is not None and limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    path = Path(spec).expanduser()
    if spec == TOY:
        problems = _load_toy(limit)
    elif is_code_benchmark(spec):
        problems = load_code_benchmark(spec)
    elif spec in REGISTRY:
        problems = _load_registered(spec)
    elif path.suffix in {".jsonl", ".json"}:
        problems = _load_file(path, fields)
    elif path.is_dir() or _looks_like_dataset_name(spec):
        problems = _load_dataset(spec, split, fields)
    else:
        raise InputError(f"unknown benchmark '{spec}' (choose from {', '.join(benchmark_names())}, "
                         "or give a .jsonl/.json file or a datasets name such as org/name)")
    problems = problems if limit is None else problems[:limit]
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise InputError(f"benchmark '{spec}' has the problem id '{problem.id}' twice; "
                             "choose a unique id field", field=fields.id)
        seen.add(problem.id)
    return problems
