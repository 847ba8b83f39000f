r"""Math benchmarks as one record type, and the prompt templates the published evaluations use.

Each public benchmark file stores its problem and gold answer under different fields and in
different shapes (GSM8K's answer is a worked solution ending in ``#### 18``, OlympiadBench's is a
list of ``$...$`` strings, AMC's is a float such as ``27.0``, AIME's may be zero-padded
``"025"``). :func:`load_benchmark` turns any of them — a registered name, a local JSONL/JSON
file, or a ``datasets`` name — into :class:`BenchmarkProblem` records with a plain-text gold
answer, so the rest of the evaluation never looks at the source format again.

The registered files live under ``primekit.paths.data_dir()/benchmarks`` (see the data README).
``aime2024`` and ``amc`` are PRIME's own variants: the 2024 rows of the AI-MO AIME validation
set and all 83 rows of the AI-MO AMC validation set.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primekit.errors import InputError
from primekit.io import iter_jsonl, read_json_or_jsonl, require_field
from primekit.paths import data_dir


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
    from primekit.eval.code_benchmarks import CODE_BENCHMARKS

    if name == TOY:
        return "Toy arithmetic"
    if name in CODE_BENCHMARKS:
        return CODE_BENCHMARKS[name].title
    return REGISTRY[name].title if name in REGISTRY else name


def benchmark_names() -> list[str]:
    from primekit.eval.code_benchmarks import CODE_BENCHMARKS

    return [*REGISTRY, *CODE_BENCHMARKS, TOY]


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
    import datasets

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
    from primekit.toy import test_problems

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
    from primekit.eval import code_benchmarks

    if spec == TOY:
        problems = _load_toy(limit)
    elif code_benchmarks.is_code_benchmark(spec):
        problems = code_benchmarks.load_code_benchmark(spec)
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


# ----------------------------------------------------------------------------------------------
# prompt templates

STEP_BY_STEP = "Please reason step by step, and put your final answer within \\boxed{}."
EURUS_USER_SUFFIX = "\n\nPresent the answer in LaTex format: \\boxed{Your answer}"


@functools.cache
def eurus_system_prompt() -> str:
    """Eurus-2-7B-PRIME's system prompt exactly as PRIME's evaluation reads it from
    ``eval/system_prompt.md``: 414 bytes whose line breaks are literal ``\\n`` escapes (read once,
    not once per prompt)."""
    from importlib import resources

    return (resources.files("primekit.eval") / "prompts" / "prime_system_prompt.md").read_text(
        encoding="utf-8")


TEMPLATES = {
    "auto": "raw for the toy benchmark, qwen25-math-cot for every other one",
    "raw": "the problem text as it is, no chat template",
    "qwen25-math-cot": "chat template; system: 'Please reason step by step, and put your final "
                       "answer within \\boxed{}.', user: the problem (Qwen2.5-Math's evaluation)",
    "eurus": "chat template; system: PRIME's published eval/system_prompt.md (byte for byte), "
             "user: the problem + 'Present the answer in LaTex format: \\boxed{Your answer}' "
             "(--protocol prime adds PRIME's budgets, stops and extraction)",
}


def check_template(template: str) -> str:
    if template not in TEMPLATES:
        raise InputError(f"unknown prompt template '{template}' (choose from {', '.join(TEMPLATES)})")
    return template


def resolve_template(template: str, benchmark: str) -> str:
    """``auto`` means raw text for the toy task (its prompts are already complete) and the
    Qwen2.5-Math chat prompt for real benchmarks."""
    check_template(template)
    if template != "auto":
        return template
    return "raw" if benchmark == TOY else "qwen25-math-cot"


def chat_messages(problem: str, template: str) -> list[dict[str, str]]:
    """The conversation a chat template renders for ``template`` (not for ``raw``/``auto``)."""
    if template == "qwen25-math-cot":
        return [{"role": "system", "content": STEP_BY_STEP}, {"role": "user", "content": problem}]
    if template == "eurus":
        return [{"role": "system", "content": eurus_system_prompt()},
                {"role": "user", "content": problem.strip() + EURUS_USER_SUFFIX}]
    raise ValueError(f"template '{template}' is not a chat template")


def render_text(problem: str, template: str, tokenizer=None) -> str:
    """The exact text given to a model for ``problem`` under a resolved (not ``auto``) template,
    generation prompt included."""
    if template == "raw":
        return problem
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise InputError(f"prompt template '{template}' needs a tokenizer with a chat template; "
                         "use --template raw for a base model")
    return tokenizer.apply_chat_template(chat_messages(problem, template), tokenize=False,
                                         add_generation_prompt=True)


def render_prompt(problem: BenchmarkProblem, template: str, tokenizer=None) -> str:
    """:func:`render_text` for a benchmark problem, resolving ``auto`` by its benchmark (code
    benchmarks: PRIME's code prompt, see :mod:`primekit.eval.code_benchmarks`)."""
    from primekit.eval import code_benchmarks

    if code_benchmarks.is_code_benchmark(problem.benchmark):
        return code_benchmarks.render_code_prompt(problem, check_template(template), tokenizer)
    return render_text(problem.problem, resolve_template(template, problem.benchmark), tokenizer)
