"""The verifier's side of the result channel reads every line as hostile: a fuzz of malformed
events and records (unreadable numbers, deep nesting, wrong types, garbage bytes) never raises and
never passes a test, and a sandbox that sent one is not used again. Deadlines and the output budget
follow the tests actually run, whatever the program writes."""

from __future__ import annotations

import json
import os
import random
import resource
import threading
import time
import types

import pytest

from primekit.rl.verifier import code_accuracy
from primekit.verifiers.code import (
    STATUSES,
    CodeVerifier,
    SandboxSettings,
    SandboxUnavailable,
    TestSuite,
    apps_suite,
    check_sandbox,
    humaneval_suite,
)
from primekit.verifiers.code import sandbox as sandbox_module

STREAMS = 1200
TOKEN = "t" * 32
CALL = TestSuite("call", "def f(x):\n    return x\n", ({"args": [1]}, {"args": [2]}), (6, 7), fn_name="f")
SCRIPT = TestSuite("script", "def f(x):\n    return x\n", ({"code": "assert f(1) == 1"}, {"code": "assert f(2) == 2"}),
                   (None, None))

HOSTILE_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "-0", "1" * 5000, "0.5", "true", "null", "\"0\"", "[0]",
                   "{}", "-1", "2", "99999999999999999999999"]


def _deep(depth: int, kind: str) -> str:
    return {"list": "[" * depth + "]" * depth, "dict": '{"a":' * depth + "0" + "}" * depth,
            "open": "[" * depth}[kind]


def _record(rng: random.Random) -> str:
    """A line a hostile call child could write on its result pipe (the right token included)."""
    test = rng.choice(HOSTILE_NUMBERS + ["0", "1"])
    value = rng.choice(HOSTILE_NUMBERS + [_deep(rng.choice([50, 5000, 200000]), rng.choice(["list", "dict", "open"]))])
    token = rng.choice([json.dumps(TOKEN), "\"nope\"", "1e400", "null"])
    templates = ['{{"test": {t}, "token": {k}, "value": {v}}}', '{{"test": {t}, "token": {k}, "missing": {v}}}',
                 '{{"test": {t}, "token": {k}}}', "{v}", '[{t}, {k}, {v}]', '{{"test": {t}, "token": {k}, "value": {v}']
    return rng.choice(templates).format(t=test, k=token, v=value)


def _event(rng: random.Random, mode: str) -> bytes:
    """One line of a hostile (or garbled) harness report."""
    roll = rng.random()
    if roll < 0.3 and mode == "call":
        line = json.dumps({"event": "record", "line": _record(rng)})
    elif roll < 0.5:
        line = json.dumps({"event": rng.choice(["child", "script", "compile_error", "end", "record", 7, None]),
                           "tests": rng.choice([[0, 1], [1e300], "x", [True], None, [10 ** 30]]),
                           "results": rng.choice([{"0": ["passed", "", 0.1]}, {"0": ["passed"]}, [], {"0": [1e308, 2, 3]},
                                                  {"1": ["not_run", "", 0]}, None]),
                           "running": rng.choice([0, 1, -1, 1e400 if False else 10 ** 40, "0", None]),
                           "seconds": rng.choice([1e308, -1, "x", None, 10 ** 400]),
                           "signal": rng.choice([9, 10 ** 30, -1, "9", None, 1e10]),
                           "exit": rng.choice([0, 1, 3, None, "0", 10 ** 30]),
                           "stdout": rng.choice(["6", 6, None, ["6"]]), "stderr": rng.choice(["", 5, None]),
                           "awaiting": rng.choice([True, False, "yes", None]),
                           "clean": rng.choice([True, False, 1, "true"]),
                           "message": rng.choice(["x", 1, None])})
        line = line.replace("1e+400", "1e400")
    elif roll < 0.7:
        line = _deep(rng.choice([10, 3000, 100000]), rng.choice(["list", "dict", "open"]))
    elif roll < 0.85:
        line = rng.choice(HOSTILE_NUMBERS)
    else:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))) + b"\n"
    return line.encode() + b"\n"


def _fake_sandbox(settings: SandboxSettings, report: bytes) -> sandbox_module.Sandbox:
    """A Sandbox whose harness is a pipe carrying ``report`` (no process, no namespaces)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.close(err_w)

    def feed() -> None:
        try:
            view = memoryview(report)
            while view:
                view = view[os.write(out_w, view[:1 << 16]):]
        except OSError:
            pass
        finally:
            os.close(out_w)

    threading.Thread(target=feed, daemon=True).start()
    sandbox = object.__new__(sandbox_module.Sandbox)
    sandbox.settings, sandbox.backend, sandbox.workdir = settings, "fake", None
    sandbox.stderr, sandbox.programs, sandbox.reusable, sandbox._buffer = b"", 0, True, b""
    sandbox.limits, sandbox.fatal, sandbox.cgroup = {}, None, None
    sandbox.process = types.SimpleNamespace(stdin=open(os.devnull, "wb"), stdout=os.fdopen(out_r, "rb"),
                                            stderr=os.fdopen(err_r, "rb"))
    return sandbox


def test_a_fuzz_of_malformed_reports_never_raises_and_never_passes(monkeypatch):
    monkeypatch.setattr(sandbox_module.secrets, "token_hex", lambda _: TOKEN)
    settings = SandboxSettings(backend="process", program_timeout=5.0, max_output_kb=64)
    rng = random.Random(18)
    garbled = 0
    for stream in range(STREAMS):
        suite = CALL if stream % 2 else SCRIPT
        report = b"".join(_event(rng, suite.mode) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.5:
            report += b'{"event": "end", "clean": true}\n'
        sandbox = _fake_sandbox(settings, report)
        try:
            verdict = sandbox.run(suite)
        finally:
            for stream_ in vars(sandbox.process).values():
                stream_.close()
        if suite.mode == "call":  # the expected values (6, 7) are never what a record says
            assert not any(t.passed for t in verdict.tests), (report[:300], verdict)
        assert len(verdict.tests) == 2 and all(t.status in STATUSES for t in verdict.tests)
        garbled += not sandbox.reusable
        if b'"clean": true' not in report:  # reused only after the harness reported a clean end
            assert not sandbox.reusable
    assert garbled > STREAMS // 3


def test_the_output_budget_counts_the_tests_actually_run():
    """A report grows by at most one test's output per test run: a suite of 1,000 tests does not
    buy its first test 1,000 tests' worth of report."""
    settings = SandboxSettings(backend="process", program_timeout=5.0, max_output_kb=16)
    suite = TestSuite("stdio", "print(1)", tuple({"input": ""} for _ in range(1000)), ("1",) * 1000)
    flood = json.dumps({"event": "child", "tests": [0], "stdout": "x" * (3 << 20)}).encode() + b"\n"
    sandbox = _fake_sandbox(settings, flood)
    verdict = sandbox.run(suite)
    assert verdict.extra["sandbox"] == "the sandbox's report was too long or garbled" and not sandbox.reusable


@pytest.fixture(scope="module")
def settings() -> SandboxSettings:
    settings = SandboxSettings(backend="bwrap", test_timeout=1.0, program_timeout=30.0, max_output_kb=64)
    try:
        check_sandbox(settings)
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    return settings


#: Call-mode programs that find their own token and write hostile records with it.
FORGERS = [
    "import gc, os\ntoken = next(o for o in gc.get_objects() if type(o) is str and len(o) == 32)\n"
    "os.write(3, ('{\"test\": 0, \"token\": \"%s\", \"value\": %s}\\n' % (token, '[' * 200000 + ']' * 200000)).encode())\n",
    "import os\nos.write(3, b'{\"test\": 1e400, \"token\": \"x\"}\\n')\n",
    "import os\nos.write(3, b'[' * 1000000 + b'\\n')\n",
    "import os\nos.write(3, bytes(range(256)) * 100 + b'\\n')\n",
    "import gc, os\ntoken = next(o for o in gc.get_objects() if type(o) is str and len(o) == 32)\n"
    "os.write(3, ('{\"test\": 0, \"token\": \"%s\", \"value\": %s}\\n' % (token, '{\"a\":' * 100000 + '0' + '}' * 100000)).encode())\n",
]


@pytest.mark.parametrize("forger", range(len(FORGERS)))
def test_code_accuracy_never_raises_on_hostile_records(forger, settings, monkeypatch):
    from primekit.rl import verifier as rl_verifier

    with CodeVerifier(settings, workers=1) as pool:
        monkeypatch.setattr(rl_verifier._code_only, "_verifier", pool, raising=False)
        cases = json.dumps({"inputs": ["[3]", "[4]"], "outputs": ["[3]", "[4]"], "fn_name": "f"})
        program = FORGERS[forger] + "def f(x):\n    return -1\n"
        completion = "```python\n" + program + "```"
        right = "```python\ndef f(x):\n    return x\n```"
        assert code_accuracy([completion, right, completion, right], [cases] * 4) == [0.0, 1.0, 0.0, 1.0]


def test_only_the_running_tests_record_extends_its_deadline(settings):
    """A stuck program that keeps writing (newlines, forged records, output) on every descriptor it
    has is stopped at its test's limit, and the verifier spends little CPU time on it."""
    writer = ("import os, time, json\ndef add(a, b):\n    while True:\n        for fd in range(1, 20):\n"
              "            try:\n                os.write(fd, b'\\n' * 1000 + json.dumps({'test': 0, 'status': 'passed'}).encode())\n"
              "            except OSError:\n                pass\n        time.sleep(0.01)\n")
    problem = {"task_id": "t/0", "entry_point": "add", "prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n",
               "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
    mbpp_like = TestSuite("script", writer, tuple({"code": f"assert add({i}, 1) == {i + 1}"} for i in range(3)),
                          (None,) * 3, prelude="", targets=("add",))
    call = apps_suite(writer, {"inputs": ["[1, 2]", "[2, 2]"], "outputs": ["3", "4"], "fn_name": "add"})
    with CodeVerifier(settings, workers=1) as pool:
        started = time.monotonic()
        pool.verify(humaneval_suite(problem, "    return a + b\n"))  # a warm sandbox: start-up is not timed
        # the sandbox's own overhead per program, as on this machine now (a busy one is slower)
        slack = max(3.0, 4 * (time.monotonic() - started))
        before = resource.getrusage(resource.RUSAGE_SELF)
        for suite in (humaneval_suite(problem, "\n" + writer), mbpp_like, call):
            started = time.monotonic()
            verdict = pool.verify(suite)
            elapsed = time.monotonic() - started
            assert verdict.passed_count == 0, verdict
            # each test ends at its own limit (its garbled answers may end it sooner): the tests'
            # time plus the sandbox's own overhead, far below the program's limit
            assert elapsed < len(suite.tests) * settings.test_timeout + slack, (elapsed, slack)
        after = resource.getrusage(resource.RUSAGE_SELF)
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 2.0
