"""``prime-eval check-references``: does each benchmark's own answer pass its own verifier?

Code benchmarks run their reference solutions (HumanEval's ``canonical_solution``, MBPP's
``code``) through the sandboxed test verifier; math benchmarks grade their gold answer, written as
``\\boxed{gold}``, against itself with the grader. Anything below 100% is a problem of the data, the
harness or the grader, not of a model: each failure is listed by problem id with its reason. The
exit status is 1 when something failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from primekit.config import help_text, parse_config
from primekit.errors import InputError
from primekit.eval.code_benchmarks import code_suite
from primekit.problems import (
    CODE_BENCHMARKS,
    REGISTRY,
    benchmark_title,
    is_code_benchmark,
    load_benchmark,
    reference_solution,
)
from primekit.verifiers.code import CodeVerifier
from primekit.verifiers.math import grade_many

DEFAULT_BENCHMARKS = ("humaneval", "mbpp")


@dataclass
class CheckReferencesArguments:
    benchmarks: str = field(default=",".join(DEFAULT_BENCHMARKS), metadata=help_text(
        "comma-separated registered benchmarks, code (" + ", ".join(CODE_BENCHMARKS)
        + ") or math (" + ", ".join(REGISTRY) + ")"))
    limit: int | None = field(default=None, metadata=help_text("only the first N problems of each benchmark"))
    workers: int | None = field(default=None, metadata=help_text(
        "sandboxes run in parallel for code benchmarks (default: one per CPU)"))

    def __post_init__(self) -> None:
        self.names = [name.strip() for name in self.benchmarks.split(",") if name.strip()]
        if not self.names:
            raise ValueError("give at least one benchmark")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")


def check_code(name: str, limit: int | None = None, workers: int | None = None) -> dict[str, Any]:
    """Pass rate of a code benchmark's reference solutions, with the failures by id."""
    problems = load_benchmark(name, limit=limit)
    with_reference = [p for p in problems if reference_solution(p) is not None]
    if not with_reference:
        return {"checked": 0, "passed": 0, "failures": [], "note": "the benchmark ships no reference solutions"}
    suites = [code_suite(p.answer, reference_solution(p)) for p in with_reference]
    with CodeVerifier(workers=workers) as verifier:
        verdicts = verifier.verify_many(suites, progress=f"{name} references")
    failures = [{"id": p.id, "reason": v.summary()} for p, v in zip(with_reference, verdicts) if not v.passed]
    return {"checked": len(suites), "passed": len(suites) - len(failures), "failures": failures}


def check_math(name: str, limit: int | None = None) -> dict[str, Any]:
    """Pass rate of a math benchmark's gold answers, boxed, graded against themselves."""
    problems = load_benchmark(name, limit=limit)
    verdicts = grade_many([(f"\\boxed{{{p.answer}}}", p.answer) for p in problems])
    failures = [{"id": p.id, "reason": f"gold answer {p.answer[:80]!r} does not grade as itself"}
                for p, ok in zip(problems, verdicts) if not ok]
    return {"checked": len(problems), "passed": len(problems) - len(failures), "failures": failures}


def check_references(argv: list[str]) -> int:
    """Run each benchmark's reference solutions (code) or gold answers (math) through its verifier."""
    (args,) = parse_config([CheckReferencesArguments], argv, prog="prime-eval check-references",
                           description=check_references.__doc__)[:1]
    for name in args.names:
        if not (is_code_benchmark(name) or name in REGISTRY):
            raise InputError(f"unknown benchmark '{name}' (choose from "
                             f"{', '.join([*CODE_BENCHMARKS, *REGISTRY])})")
    results = {name: check_code(name, args.limit, args.workers) if is_code_benchmark(name)
               else check_math(name, args.limit) for name in args.names}
    _print(results)
    return 0 if all(not r["failures"] for r in results.values()) else 1


def _print(results: dict[str, dict[str, Any]]) -> None:

    table = Table(title="prime-eval check-references")
    for column in ("benchmark", "checked", "passed", "pass rate"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for name, result in results.items():
        rate = f"{100 * result['passed'] / result['checked']:.1f}%" if result["checked"] else result.get("note", "–")
        table.add_row(benchmark_title(name), str(result["checked"]), str(result["passed"]), rate)
    console = Console()
    console.print(table)
    for name, result in results.items():
        for failure in result["failures"]:
            console.print(f"{name} {failure['id']}: {failure['reason']}", markup=False, highlight=False)
