"""A fuzz of 1,200 random and garbled programs through the sandbox pool: every one gets a verdict,
the unharmed seeds still pass, and no process or file is left behind."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

from primekit.verifiers.code import (
    CodeVerifier,
    SandboxSettings,
    SandboxUnavailable,
    Verdict,
    apps_suite,
    humaneval_suite,
)
from test_code_sandbox import wait_for_no_sandbox_processes

PROGRAMS = 1200
STDIO_CASES = {"inputs": ["3\n1 2 3\n", "1\n7\n"], "outputs": ["6\n", "7\n"]}
CALL_CASES = {"inputs": ["[1, 2, 3]", "[]"], "outputs": ["6", "0"], "fn_name": "total"}
PROBLEM = {"task_id": "fuzz/0", "entry_point": "total", "prompt": "def total(xs):\n",
           "test": "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n"}
SEEDS = {
    "stdio": ["n = int(input())\nprint(sum(map(int, input().split())))\n",
              "import sys\ndata = sys.stdin.read().split()\nprint(sum(map(int, data[1:])))\n"],
    "call": ["def total(xs):\n    return sum(xs)\n", "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n"],
    "script": ["    return sum(xs)\n", "    s = 0\n    for x in xs:\n        s += x\n    return s\n"],
}
NOISE = ["import os\n", "os.fork()\n", "print('x' * 100000)\n", "while True: pass\n", "import sys; sys.exit(0)\n",
         "raise SystemExit\n", "exec(input())\n", "__import__('os')._exit(0)\n", "del __builtins__\n",
         "import signal; signal.signal(signal.SIGALRM, signal.SIG_IGN)\n", "x = [0] * 10 ** 9\n",
         "open('f', 'w').write('y' * 10 ** 7)\n", "import socket; socket.socket().connect(('127.0.0.1', 1))\n",
         "import os; os.kill(os.getppid(), 9)\n", "import os; os.kill(-1, 9)\n", "\0", "\udcff", "'''", "(((((((((((", "lambda: (yield)\n", "return 6\n", "global x\n", "\t\t", ":\n"]


def garble(program: str, rng: random.Random) -> str:
    """One to three random edits: delete, insert noise or random characters, duplicate, truncate."""
    for _ in range(rng.randint(1, 3)):
        cut = rng.randint(0, len(program))
        kind = rng.random()
        if kind < 0.25:
            program = program[:cut] + program[cut + rng.randint(1, 8):]
        elif kind < 0.45:
            program = program[:cut] + rng.choice(NOISE) + program[cut:]
        elif kind < 0.7:
            alphabet = "()[]{}:;=+-*/\\'\"#\n\t xyz0123456789\x00é🙂"
            program = program[:cut] + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) + program[cut:]
        elif kind < 0.85:
            lines = program.splitlines(keepends=True)
            if lines:
                line = rng.choice(lines)
                program = program + line
        else:
            program = program[:cut]
    return program


def build_suites(count: int, seed: int = 0):
    rng = random.Random(seed)
    suites, untouched = [], []
    for index in range(count):
        mode = ("stdio", "call", "script")[index % 3]
        program = rng.choice(SEEDS[mode])
        keep = index < 30  # the first programs stay unharmed: they must still pass
        if not keep:
            program = garble(program, rng) if rng.random() < 0.9 else "".join(
                rng.choice(NOISE) for _ in range(rng.randint(1, 4)))
        if mode == "stdio":
            suites.append(apps_suite(program, STDIO_CASES))
        elif mode == "call":
            suites.append(apps_suite(program, CALL_CASES))
        else:
            suites.append(humaneval_suite(PROBLEM, program))
        untouched.append(keep)
    return suites, untouched


@pytest.mark.slow
def test_fuzz_leaves_no_processes_and_no_files():
    settings = SandboxSettings(test_timeout=0.5, program_timeout=2.0, memory_mb=512, max_output_kb=64,
                               max_file_mb=4, disk_mb=16)
    try:
        verifier = CodeVerifier(settings, workers=2)
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    temp = Path(tempfile.gettempdir())
    before = set(temp.iterdir())
    suites, untouched = build_suites(PROGRAMS)
    with verifier:
        verdicts = verifier.verify_many(suites)
    assert len(verdicts) == PROGRAMS and all(isinstance(v, Verdict) for v in verdicts)
    assert all(v.passed for v, keep in zip(verdicts, untouched) if keep)
    garbled = [v for v, keep in zip(verdicts, untouched) if not keep]
    assert 0 < sum(v.passed for v in garbled) < len(garbled)  # some edits are harmless, most are not
    assert all(v.error is None or "sandbox" not in v.error for v in verdicts), "the sandbox itself failed"
    assert wait_for_no_sandbox_processes() == []
    new = {path for path in set(temp.iterdir()) - before
           if path.name.startswith("primekit-code-") or path.stat().st_uid == 65534}
    assert new == set()
    assert not any(path.owner() == "nobody" for path in Path(os.getcwd()).iterdir())
