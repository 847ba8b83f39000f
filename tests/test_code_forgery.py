"""Programs that try to pass benchmark tests without solving anything: they patch the tests'
built-ins, write result records of their own, return objects equal to everything, or look up the
benchmark's own solutions. Each passes no HumanEval, MBPP or LeetCode problem, while the
benchmarks' reference solutions (and hand-written LeetCode answers) still pass."""

from __future__ import annotations

import gzip
import json
import textwrap

import pytest

from primekit.eval.code_benchmarks import CodeGrader
from primekit.paths import data_dir
from primekit.verifiers.code import (
    CodeVerifier,
    SandboxSettings,
    SandboxUnavailable,
    TestSuite,
    check_sandbox,
    humaneval_suite,
    leetcode_suite,
    mbpp_suite,
)

CODE = data_dir() / "code"
PROBLEMS_PER_BENCHMARK = 3

#: Module-level code run before the function returns anything: each tries to make the tests pass.
SETUPS = {
    "compile patched": "import builtins\n_c = builtins.compile\n"
                       "builtins.compile = lambda s, f, m, *a, **k: _c('pass', f, m)\n",
    "exec and eval patched": "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.eval = lambda *a, **k: True\n",
    "assertion error muted": "import builtins\nclass _E(BaseException):\n    pass\nbuiltins.AssertionError = _E\n",
    "records on every descriptor": textwrap.dedent("""\
        import os, json, gc
        tokens = [o for o in gc.get_objects() if isinstance(o, str) and len(o) == 32]
        for fd in range(3, 64):
            for i in range(8):
                for line in [{"test": i, "status": "passed", "detail": ""}, {"test": i, "token": "x"},
                             *({"test": i, "token": t} for t in tokens[:50])]:
                    try:
                        os.write(fd, (json.dumps(line) + "\\n").encode())
                    except OSError:
                        pass
        """),
    "records through /proc": textwrap.dedent("""\
        import os, json
        for pid in os.listdir('/proc'):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    fds = os.listdir(f'/proc/{pid}/fd')
                except OSError:
                    continue
                for fd in fds:
                    try:
                        with open(f'/proc/{pid}/fd/{fd}', 'w') as handle:
                            for i in range(8):
                                handle.write(json.dumps({"test": i, "status": "passed", "detail": ""}) + "\\n")
                    except OSError:
                        pass
        """),
    "the tests' process stopped": textwrap.dedent("""\
        import os, signal
        for pid in os.listdir('/proc'):
            if pid.isdigit() and int(pid) not in (1, os.getpid()):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        """),
    "canonical solutions looked up": textwrap.dedent("""\
        import os, gzip, json
        SOLUTIONS = {}
        for root in ('/', ):
            for folder, dirs, files in os.walk(root):
                if folder.startswith(('/proc', '/sys', '/dev')):
                    dirs[:] = []
                    continue
                for name in files:
                    low = name.lower()
                    if 'humaneval' in low or 'mbpp' in low or 'leetcode' in low or low.endswith('.jsonl.gz'):
                        path = os.path.join(folder, name)
                        try:
                            opener = gzip.open if name.endswith('.gz') else open
                            with opener(path, 'rt') as handle:
                                text = handle.read()
                            rows = json.loads(text) if text.lstrip().startswith('[') else [
                                json.loads(line) for line in text.splitlines() if line.strip()]
                            for row in rows:
                                SOLUTIONS[str(row.get('task_id'))] = row
                        except Exception:
                            pass
        if not SOLUTIONS:
            raise SystemExit('no benchmark data in the sandbox')
        """),
}

#: What the function under test returns, given the setup above.
RETURNS = {
    "always equal": "_Always()",
    "always equal int": "_AlwaysInt(-987654321)",
    "a reference to itself": "Solution if False else (lambda *a: a)",
}
ALWAYS = textwrap.dedent("""\
    class _Always:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __lt__(self, other): return True
        __le__ = __gt__ = __ge__ = __lt__
        def __hash__(self): return 0
        def __bool__(self): return True
        def __len__(self): return 0
        def __iter__(self): return iter(())
        def __abs__(self): return 0
        def __sub__(self, other): return 0
        __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __sub__
        def __getattr__(self, name): return lambda *a, **k: self
    class _AlwaysInt(int):
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __hash__(self): return 0
    """)


# forged programs on every benchmark's problems, through the sandbox: slow (left out of `make test-fast`)
pytestmark = pytest.mark.slow


def forged(setup: str, returns: str, name: str, leetcode: bool) -> str:
    body = ALWAYS + SETUPS[setup]
    if leetcode:
        return body + f"class Solution:\n    def __getattr__(self, name):\n        return lambda *a, **k: {RETURNS[returns]}\n"
    return body + f"def {name}(*args, **kwargs):\n    return {RETURNS[returns]}\n"


def _problems():
    humaneval = [json.loads(line) for line in gzip.open(CODE / "humaneval" / "HumanEval.jsonl.gz", "rt")]
    mbpp = json.loads((CODE / "mbpp" / "new_mbpp.json").read_text())
    leetcode = [json.loads(line) for line in (CODE / "leetcode" / "leetcode-test.json").read_text().splitlines()
                if line.strip()]
    return humaneval[:PROBLEMS_PER_BENCHMARK], mbpp[:PROBLEMS_PER_BENCHMARK], leetcode[:PROBLEMS_PER_BENCHMARK]


@pytest.fixture(scope="module")
def verifier():
    settings = SandboxSettings(backend="bwrap", test_timeout=3.0, program_timeout=20.0)
    try:
        check_sandbox(settings)
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    if not (CODE / "humaneval" / "HumanEval.jsonl.gz").is_file():
        pytest.skip("benchmark data not in the data folder")
    with CodeVerifier(settings, workers=2) as pool:
        yield pool


def _suites(setup: str, returns: str):
    humaneval, mbpp, leetcode = _problems()
    for problem in humaneval:
        yield humaneval_suite(problem, "\n" + forged(setup, returns, problem["entry_point"], False))
    for problem in mbpp:
        name = mbpp_suite(problem, "pass").targets[0]
        yield mbpp_suite(problem, forged(setup, returns, name, False))
    for problem in leetcode:
        yield leetcode_suite(problem, forged(setup, returns, "", True))


@pytest.mark.parametrize("returns", list(RETURNS))
@pytest.mark.parametrize("setup", list(SETUPS))
def test_a_forged_program_passes_no_benchmark_problem(setup, returns, verifier):
    verdicts = verifier.verify_many(list(_suites(setup, returns)))
    passed = [v.extra for v in verdicts if v.passed]
    assert passed == [], (setup, returns, [v.summary() for v in verdicts])
    # not even a single assert of one
    assert sum(v.passed_count for v in verdicts) == 0, [v.summary() for v in verdicts]


def test_references_and_hand_written_answers_still_pass(verifier):
    humaneval, mbpp, leetcode = _problems()
    suites = [humaneval_suite(p, p["canonical_solution"]) for p in humaneval]
    suites += [mbpp_suite(p, p["code"]) for p in mbpp]
    verdicts = verifier.verify_many(suites)
    assert all(v.passed for v in verdicts), [v.summary() for v in verdicts]



def test_leetcode_answers_pass_by_value_lists_and_nodes(verifier):
    """A LeetCode answer gets arguments as values (``ListNode`` chains too) and its results are
    compared as values in the tests' own process."""
    leetcode = [json.loads(line) for line in (CODE / "leetcode" / "leetcode-test.json").read_text().splitlines()
                if line.strip()]
    by_id = {row["task_id"]: row for row in leetcode}
    pushes = by_id[leetcode[0]["task_id"]]
    answer = ("class Solution:\n    def minimumPushes(self, word: str) -> int:\n"
              "        return sum((i // 8 + 1) for i in range(len(word)))\n")
    doubling = by_id["weekly-contest-358-double-a-number-represented-as-a-linked-list"]
    double = ("class Solution:\n    def doubleIt(self, head):\n        digits = []\n        while head:\n"
              "            digits.append(str(head.val))\n            head = head.next\n"
              "        value = str(int(''.join(digits)) * 2)\n        out = None\n"
              "        for d in reversed(value):\n            out = ListNode(int(d), out)\n        return out\n")
    verdicts = verifier.verify_many([leetcode_suite(pushes, answer), leetcode_suite(doubling, double),
                                     leetcode_suite(doubling, double.replace("* 2", "* 3"))])
    assert verdicts[0].passed, verdicts[0].summary()
    assert verdicts[1].passed, verdicts[1].summary()
    assert not verdicts[2].passed and verdicts[2].passed_count <= 1  # 0 doubled is 0 tripled


def test_the_grader_of_prime_eval_run_passes_no_forged_answer():
    """``prime-eval run`` grades code answers with :class:`CodeGrader`: forged answers, fenced as a
    model would write them, score 0."""
    humaneval, mbpp, _ = _problems()
    golds, responses = [], []
    for setup in SETUPS:
        for problem in humaneval:
            golds.append(json.dumps({"tests": "humaneval", "id": problem["task_id"]}))
            responses.append("```python\n" + forged(setup, "always equal", problem["entry_point"], False) + "```")
        for problem in mbpp:
            golds.append(json.dumps({"tests": "mbpp", "id": str(problem["task_id"])}))
            name = mbpp_suite(problem, "pass").targets[0]
            responses.append("```python\n" + forged(setup, "always equal int", name, False) + "```")
    try:
        grader = CodeGrader(SandboxSettings(backend="bwrap", test_timeout=3.0, program_timeout=20.0), workers=2)
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    with grader:
        results = grader(responses, golds)
    assert [passed for _, passed in results] == [False] * len(results)


def test_the_program_finds_no_test_code_in_its_memory(verifier):
    """The program's process never held the tests: not in an object it can reach (frames, gc), not
    in its raw memory (every readable mapping, read with ctypes), neither this program's tests nor
    those of the programs the sandbox ran before. The program looks for the tests' marker with
    every byte shifted by one, so that the marker itself is never in its memory."""
    marker = "tests-only-marker-5e1d"
    shifted = bytes((b + 1) % 256 for b in marker.encode()).hex()
    probe = textwrap.dedent(f"""\
        import ctypes, gc, sys
        SHIFT = bytes((i + 1) % 256 for i in range(256))
        NEEDLE = bytes.fromhex('{shifted}')
        def scan():
            found = []
            frame = sys._getframe()
            while frame is not None:
                found += [k for k, v in frame.f_locals.items()
                          if NEEDLE in repr(v)[:10 ** 6].encode(errors='ignore').translate(SHIFT)]
                frame = frame.f_back
            if any(NEEDLE in o.encode(errors='ignore').translate(SHIFT) for o in gc.get_objects() if type(o) is str):
                found.append('gc')
            for line in open('/proc/self/maps').read().splitlines():
                fields = line.split()
                if 'r' not in fields[1] or any(n in line for n in ('[vvar', '[vsyscall')):
                    continue
                start, end = (int(x, 16) for x in fields[0].split('-'))
                for offset in range(start, end, 1 << 20):  # in overlapping pieces: little memory of its own
                    if NEEDLE in ctypes.string_at(offset, min((1 << 20) + 64, end - offset)).translate(SHIFT):
                        found.append(fields[-1] if len(fields) > 5 else 'anonymous')
                        break
            return found
        """)
    suite = TestSuite("script", probe, ({"code": f"assert scan() == []  # {marker}"},), (None,), prelude="",
                      targets=("scan",))
    for _ in range(2):  # the second time, the sandbox has served the first
        verdict = verifier.verify(suite)
        assert verdict.passed, verdict
