"""Judging a suite: the harness's events turned into per-test results. The harness is ours, but
a call test's record comes from the candidate's process, so every field of every event is checked
for its exact type and range; whatever fails a check counts against the program, never raises."""

from __future__ import annotations

import json
import signal
from typing import Any

from primekit.verifiers.code.compare import call_result_matches, stdout_matches
from primekit.verifiers.code.suite import STATUSES, TestResult, TestSuite, Verdict

DETAIL_CHARS = 600


def clip(text: str) -> str:
    """``text`` stripped and, when longer than ``DETAIL_CHARS``, cut in the middle."""
    text = text.strip()
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS // 2] + " ... " + text[-DETAIL_CHARS // 2:]


class Judge:
    """Turns harness events into per-test results for one suite. The harness is ours, but a call
    test's record comes from the candidate's process: every field is checked for its exact type
    and range, and whatever fails a check counts against the program, never raises."""

    def __init__(self, suite: TestSuite, tokens: list[str]) -> None:
        self.suite = suite
        self.tokens = tokens
        self.results: dict[int, TestResult] = {}
        self.records: dict[int, dict[str, Any]] = {}
        self.error: str | None = None

    def failed(self) -> bool:
        return self.error is not None or any(not r.passed for r in self.results.values())

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "record" and self.suite.mode == "call":
            self._record(event.get("line"))
        elif kind == "child" and self.suite.mode != "script":
            self._child(event)
        elif kind == "script" and self.suite.mode == "script":
            self._script(event)
        elif kind == "compile_error":
            self.error = clip(f"the program does not compile: {event_text(event.get('message'))}")

    def _record(self, line: Any) -> None:
        if type(line) is not str:
            return
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return
        if type(record) is not dict or type(record.get("test")) is not int:
            return
        index = record["test"]
        if 0 <= index < len(self.tokens) and record.get("token") == self.tokens[index]:
            self.records[index] = record  # only a record carrying the test's own token counts

    def _child(self, event: dict[str, Any]) -> None:
        tests = event.get("tests")
        tests = [i for i in tests if type(i) is int and 0 <= i < len(self.tokens)] if type(tests) is list else []
        seconds = _number(event.get("seconds")) / max(1, len(tests))
        failure = self._child_failure(event)
        for position, index in enumerate(tests):
            if index in self.records:
                status, detail = self._judge_record(index, self.records[index])
            elif self.suite.mode == "stdio" and failure is None:
                status, detail = self._judge_stdout(index, event_text(event.get("stdout")))
            elif failure is not None and (position == 0 or tests[position - 1] in self.records):
                status, detail = failure
            elif failure is None:  # a call child ended cleanly without reporting this test
                status, detail = "exited_early", "the program ended before this test finished"
            else:
                status, detail = "not_run", "an earlier test failed"
            self.results[index] = TestResult(index, status, round(seconds, 4), clip(detail))
            if status == "error" and detail.startswith("program defines no function"):
                self.error = detail

    def _script(self, event: dict[str, Any]) -> None:
        """The test process's verdicts (the harness passes on only its records of the running test)."""
        results = event.get("results") if type(event.get("results")) is dict else {}
        running = event.get("running") if type(event.get("running")) is int else -1
        stopped = event.get("finished") is True
        for index in range(len(self.suite.tests)):
            entry = results.get(str(index))
            if type(entry) is list and len(entry) == 3 and entry[0] in STATUSES and entry[0] != "not_run":
                status, detail, seconds = entry[0], event_text(entry[1]), _number(entry[2])
            elif index == running and event.get("timeout") is True:
                status, detail, seconds = "timeout", "time limit exceeded", None
            elif index == running and event.get("output_limit") is True:
                status, detail, seconds = "output_limit", "printed more than the output limit", None
            elif index == running and not stopped:
                status, detail, seconds = "error", "the tests' process ended before this test finished", None
            else:
                status, detail, seconds = "not_run", "", None
            self.results[index] = TestResult(index, status, None if seconds is None else round(seconds, 4),
                                             clip(detail))

    def _child_failure(self, event: dict[str, Any]) -> tuple[str, str] | None:
        stderr = event_text(event.get("stderr"))
        if event.get("output_limit") is True:
            return "output_limit", "printed more than the output limit"
        if event.get("timeout") is True:
            return "timeout", "time limit exceeded"
        number = event.get("signal")
        if type(number) is int:
            name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
            cause = " (CPU time limit)" if name in ("SIGXCPU", "SIGKILL") else ""
            return ("timeout" if name == "SIGXCPU" else "killed"), f"killed by {name}{cause}. {stderr}"
        code = event.get("exit")
        if code == 3:
            return "exited_early", stderr or "the program exited before its test finished"
        if code not in (0, None):
            return "error", stderr or f"exit status {code}"
        return None

    def _judge_record(self, index: int, record: dict[str, Any]) -> tuple[str, str]:
        if "missing" in record:
            return "error", f"program defines no function '{self.suite.fn_name}'"
        value, expected = record.get("value"), self.suite.expected[index]
        try:
            if call_result_matches(value, expected):
                return "passed", ""
            shown = json.dumps(value)[:200]
        except (RecursionError, ValueError, TypeError):
            return "wrong_answer", "returned a value nested too deeply to compare"
        return "wrong_answer", f"returned {shown}, expected {json.dumps(expected)[:200]}"

    def _judge_stdout(self, index: int, stdout: str) -> tuple[str, str]:
        expected = self.suite.expected[index]
        if stdout_matches(stdout, expected):
            return "passed", ""
        return "wrong_answer", f"printed {stdout[:200]!r}, expected {str(expected)[:200]!r}"

    def verdict(self, seconds: float, sandbox_error: str | None) -> Verdict:
        tests = tuple(self.results.get(i, TestResult(i, "not_run")) for i in range(len(self.tokens)))
        error = self.error
        if error is None and sandbox_error is not None and not self.results:
            error = sandbox_error
        return Verdict(tests=tests, error=error, seconds=round(seconds, 4),
                       extra={"sandbox": sandbox_error} if sandbox_error else {})


def event_text(value: Any) -> str:
    """A text field of an event (anything else reads as empty)."""
    return value if type(value) is str else ""


def _number(value: Any) -> float:
    """A finite, non-negative number field of an event (anything else reads as 0)."""
    return float(value) if type(value) in (int, float) and 0 <= value < 1e9 else 0.0
