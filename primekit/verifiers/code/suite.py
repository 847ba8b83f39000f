"""What the code verifier runs and what it answers: a test suite in, a verdict with per-test
details out. Plain data, shared by the test formats, the sandbox and the reward functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Mode", "TestSuite", "TestResult", "Verdict", "STATUSES"]

#: ``stdio``: the program reads a test's input on stdin, its stdout is compared;
#: ``call``: a function (or ``Solution`` method) is called with a test's arguments, its return
#: value is compared; ``script``: the benchmark's test code (asserts) runs in a process of its own,
#: calling the program's functions in another one with plain values, and passes when it finishes.
Mode = Literal["stdio", "call", "script"]

#: What can happen to one test.
STATUSES = {
    "passed": "ran to the end and gave the expected answer",
    "wrong_answer": "ran to the end, answer differs",
    "error": "raised an exception (or exited with a non-zero status)",
    "exited_early": "left before its test finished (sys.exit, os._exit, atexit, ...)",
    "timeout": "exceeded the wall-clock or CPU time limit of a test",
    "killed": "killed by a signal (memory limit, crash, ...)",
    "output_limit": "printed more than the output limit",
    "not_run": "not reached (the program stopped, its time ran out, or an earlier test failed)",
}


@dataclass(frozen=True)
class TestSuite:
    """A candidate program and its tests.

    ``tests`` hold what goes *into* the sandbox: ``{"input": str}`` (stdio), ``{"args": [...]}``
    (call) or ``{"code": str}`` (script). ``expected`` holds, per test, what stays outside: the
    expected stdout (stdio), the expected return value (call), or None (script: the asserts
    carry their own expectations).
    """

    mode: Mode
    program: str
    tests: tuple[dict[str, Any], ...]
    expected: tuple[Any, ...]
    fn_name: str | None = None
    #: Call ``Solution().fn_name`` instead of a module-level function (APPS rule: the program's
    #: text mentions ``class Solution``).
    solution_class: bool = False
    name: str = ""
    #: script mode: the benchmark's own code that the tests run after (HumanEval's prompt, MBPP's
    #: imports, LeetCode's prelude), run in the tests' process, never the candidate's
    prelude: str = ""
    #: script mode: names the tests always take from the candidate's program, even where the
    #: prelude defines them (HumanEval's entry point, LeetCode's ``Solution``); any other name the
    #: tests read comes from the candidate only when neither the prelude nor the built-ins have it
    targets: tuple[str, ...] = ()
    __test__ = False  # not a pytest test class

    def __post_init__(self) -> None:
        if len(self.tests) != len(self.expected):
            raise ValueError(f"{len(self.tests)} tests but {len(self.expected)} expected outputs")
        if self.mode == "call" and not self.fn_name:
            raise ValueError("a call suite needs fn_name")


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class
    index: int
    status: str
    seconds: float | None = None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one program: per-test results, or a program-level ``error`` (no code, a
    syntax error, a missing function, a sandbox failure) in one line."""

    tests: tuple[TestResult, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def passed(self) -> bool:
        """Every test passed (and there was at least one)."""
        return self.error is None and bool(self.tests) and all(t.passed for t in self.tests)

    @property
    def passed_count(self) -> int:
        return sum(t.passed for t in self.tests)

    def pass_fraction(self, first: int | None = None) -> float:
        """Share of the (first ``first``) tests that passed; 0 on a program-level error."""
        tests = self.tests[:first] if first else self.tests
        if self.error is not None or not tests:
            return 0.0
        return sum(t.passed for t in tests) / len(tests)

    def summary(self) -> str:
        """One line: ``passed 3/5 (first failure: test 2 wrong_answer: ...)``."""
        if self.error is not None:
            return f"error: {self.error}"
        failed = next((t for t in self.tests if not t.passed), None)
        line = f"passed {self.passed_count}/{len(self.tests)}"
        if failed is not None:
            line += f" (first failure: test {failed.index} {failed.status}"
            line += f": {failed.detail.splitlines()[0][:200]})" if failed.detail.strip() else ")"
        return line
