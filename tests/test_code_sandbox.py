"""The code sandbox against hostile programs: each one is judged failing (or, where it prints the
right answer, passes and leaves no trace), within its time limit, with no process left behind and
nothing changed outside its directory."""

from __future__ import annotations

import ast
import ctypes
import dataclasses
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from primekit.verifiers.code import (
    CodeVerifier,
    SandboxSettings,
    SandboxUnavailable,
    TestSuite,
    apps_suite,
    check_sandbox,
    humaneval_suite,
    run_suite,
)
from primekit.verifiers.code import launch
from primekit.verifiers.code import sandbox as sandbox_module

LIMITS = dict(test_timeout=1.0, program_timeout=4.0, memory_mb=512, max_processes=8, max_output_kb=64,
              max_file_mb=4, disk_mb=16)
#: A verdict must come within the program's limit plus the sandbox's start-up, measured on this
#: machine as it is now (a busy machine starts sandboxes slower): at least 3 s, else 4x a cold start.
SLACK_SECONDS = 3.0


def _bwrap_settings() -> SandboxSettings:
    global SLACK_SECONDS
    settings = SandboxSettings(backend="bwrap", **LIMITS)
    try:
        check_sandbox(settings)
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    started = time.monotonic()
    run_suite(TestSuite("stdio", "print(1)\n", ({"input": ""},), ("1",)), settings)
    SLACK_SECONDS = max(SLACK_SECONDS, 4 * (time.monotonic() - started))
    return settings


@pytest.fixture(scope="module")
def settings() -> SandboxSettings:
    return _bwrap_settings()


@pytest.fixture(scope="module")
def shared(settings):
    """One sandbox reused from program to program (while each run ends cleanly)."""
    with CodeVerifier(settings, workers=1) as verifier:
        yield verifier


#: prctl option: orphaned descendants are re-parented to this process, not to the machine's init.
PR_SET_CHILD_SUBREAPER = 36
# A sandbox whose bwrap died, or a program that daemonized outside a pid namespace, is an orphan;
# as their subreaper this test process keeps them among its descendants, where the check below
# looks (sandboxes of other jobs on the machine are not its descendants and do not count).
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _process_table() -> dict[int, tuple[int, str, bool, bool]]:
    """pid -> (parent pid, command line, looks like a sandbox process, is a zombie) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
            parent, uid = int(status["PPid"]), int(status["Uid"].split()[0])
        except (OSError, KeyError, ValueError):
            continue
        cmdline = b" ".join(argv).decode(errors="replace")
        sandbox = (os.path.basename(argv[0]) == b"bwrap" or "/primekit/harness" in cmdline
                   or "/verifiers/code/harness" in cmdline or (os.geteuid() == 0 and uid == 65534))
        table[int(entry.name)] = (parent, cmdline, sandbox, status.get("State", "").strip().startswith("Z"))
    return table


def sandbox_processes() -> list[str]:
    """Live sandbox processes started by this test process: a bwrap, a harness, a process running
    as nobody (under root), or anything one of them started."""
    table, me, found = _process_table(), os.getpid(), []
    for pid, (parent, cmdline, sandbox, zombie) in table.items():
        if zombie:
            continue  # a zombie runs nothing; reaping it is its parent's (or init's) job
        while parent != me and parent in table:  # up the lineage to this process, if it leads here
            sandbox = sandbox or table[parent][2]
            parent = table[parent][0]
        if parent == me and sandbox:
            found.append(f"{pid}: {cmdline[:80]}")
    return found


def wait_for_no_sandbox_processes(timeout: float = 3.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = sandbox_processes()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


ADD = {"inputs": ["1 2\n", "40 2\n"], "outputs": ["3\n", "42\n"]}
RIGHT = "a, b = map(int, input().split())\nprint(a + b)\n"


def run(program: str, settings: SandboxSettings, cases=ADD):
    started = time.monotonic()
    verdict = run_suite(apps_suite(program, cases), settings)
    elapsed = time.monotonic() - started
    assert elapsed < settings.program_timeout + SLACK_SECONDS, f"took {elapsed:.1f} s"
    return verdict


def test_a_correct_program_passes(settings):
    verdict = run(RIGHT, settings)
    assert verdict.passed and [t.status for t in verdict.tests] == ["passed", "passed"]


HOSTILE = {
    "loops forever": ("while True:\n    pass\n", {"timeout"}),
    "ignores SIGALRM and SIGXCPU": ("import signal\nfor s in (signal.SIGALRM, signal.SIGXCPU, signal.SIGTERM):\n"
                                    "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n", {"timeout"}),
    "sleeps forever": ("import time\ntime.sleep(10 ** 6)\n", {"timeout"}),
    "forks without end": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                          {"timeout", "error", "killed"}),
    # containment, not speed, is the point of these: on a busy machine the time limit may come first
    "allocates without end": ("x = []\nwhile True:\n    x.append(bytearray(10 ** 7))\n", {"error", "killed", "timeout"}),
    "allocates in C": ("x = bytearray(10 ** 12)\n", {"error", "killed", "timeout"}),
    "fills the disk": ("i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * 10 ** 6)\n    i += 1\n",
                       {"error", "killed", "timeout"}),
    "prints without end": ("while True:\n    print('x' * 10000)\n", {"output_limit"}),
    "kills its parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)\n",
                         {"not_run", "timeout", "killed"}),
    "kills every process it can": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n",
                                   {"not_run", "killed", "error", "wrong_answer"}),
    "daemonizes": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                   "        time.sleep(60)\n    os._exit(0)\nprint('nothing')\n", {"wrong_answer"}),
    "recurses without end": ("def f(n):\n    return f(n + 1)\nf(0)\n", {"error", "killed", "timeout"}),
    "crashes the interpreter": ("import ctypes\nctypes.string_at(0)\n", {"killed"}),
    "exits 1 after a right answer": (RIGHT + "import sys\nsys.exit(1)\n", {"error"}),
}


#: The programs that run until their time limit, twice: slow (left out of `make test-fast`).
UNTIL_THE_LIMIT = ("loops forever", "ignores SIGALRM and SIGXCPU", "sleeps forever", "forks without end",
                   "kills its parent", "recurses without end")


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in UNTIL_THE_LIMIT else name
                                  for name in HOSTILE])
def test_hostile_program_fails_in_time_and_leaves_nothing(name, settings, shared):
    program, allowed = HOSTILE[name]
    verdict = run(program, settings)
    assert not verdict.passed
    statuses = {t.status for t in verdict.tests}
    assert statuses <= allowed | {"not_run"} and statuses & allowed or verdict.error, (name, verdict)
    # in a sandbox that serves programs one after another, it does not spoil the next program
    started = time.monotonic()
    assert not shared.verify(apps_suite(program, ADD)).passed
    assert time.monotonic() - started < settings.program_timeout + SLACK_SECONDS
    assert shared.verify(apps_suite(RIGHT, ADD)).passed, name
    shared.close()
    assert wait_for_no_sandbox_processes() == []


def test_the_leak_check_sees_a_sandbox_even_after_its_bwrap_is_gone(settings):
    sandbox = sandbox_module.Sandbox(settings)
    try:
        assert sandbox.run(apps_suite(RIGHT, ADD)).passed
        assert any("/primekit/harness" in line for line in sandbox_processes())
        os.kill(sandbox.process.pid, signal.SIGKILL)  # bwrap alone: the harness is orphaned, still alive
        sandbox.process.wait()
        assert any("/primekit/harness" in line for line in sandbox_processes())
    finally:
        sandbox.close()
    assert wait_for_no_sandbox_processes() == []


@pytest.mark.parametrize("backend", ["bwrap", "process"])
def test_a_sandbox_closed_in_the_middle_of_a_program_ends_at_once(backend, settings, monkeypatch):
    """The verifier gives up on a sandbox that does not report in time (here: at once, while the
    program's own limits are long) and closes it: nothing of it outlives the close."""
    patient = dataclasses.replace(settings, backend=backend, test_timeout=30.0, program_timeout=60.0)
    if backend == "process" and os.geteuid() == 0:
        patient = dataclasses.replace(patient, python="/usr/bin/python3")
    monkeypatch.setattr(sandbox_module, "STARTUP_GRACE_SECONDS", 1.0 - patient.program_timeout)
    verdict = run_suite(apps_suite("import time\ntime.sleep(10 ** 6)\n", ADD), patient)
    assert verdict.extra["sandbox"] == "the program's time limit ran out", verdict
    assert wait_for_no_sandbox_processes(timeout=1.0) == []


def test_a_reused_sandbox_gives_each_program_a_clean_slate(settings):
    litter = ("import os, subprocess\nfor folder in ('.', '/tmp', '/dev/shm'):\n"
              "    open(os.path.join(folder, 'litter'), 'w').write('x')\n    os.makedirs(os.path.join(folder, 'd/e'))\n"
              "    os.chmod(os.path.join(folder, 'd'), 0o500)\n"
              "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(60)\nprint('done')\n")
    # the processes of the sandbox besides this program: its harness (pid 1) and the harness's zygote
    look = ("import os\nleft = [f for folder in ('.', '/tmp', '/dev/shm') for f in os.listdir(folder)]\n"
            "others = sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid())\n"
            "print(left, others)\n")
    with CodeVerifier(settings, workers=1) as verifier:
        before = verifier.verify(TestSuite("stdio", look, ({"input": ""},), ("?",))).tests[0].detail
        baseline = ast.literal_eval(before.split("printed ", 1)[1].rsplit(", expected", 1)[0]).strip()
        assert baseline.startswith("[] [1, ") and baseline.count(",") == 1, before  # pid 1 and the zygote
        assert verifier.verify(TestSuite("stdio", litter, ({"input": ""},), ("done",))).passed
        verdict = verifier.verify(TestSuite("stdio", look, ({"input": ""},), (baseline,)))
        assert verdict.passed, verdict
        assert len({id(s) for s in verifier._idle}) == 1  # the same sandbox served them all


@pytest.mark.slow
def test_skipping_after_a_failure_is_exact_and_leaves_the_sandbox_clean(settings):
    """With stop_on_failure, the tests after the first failure are never run (a loop costs one
    test's limit), and whatever the failing program was, the next program in the same sandbox is
    judged exactly as in a fresh one."""
    three = {"inputs": ["1 2\n", "40 2\n", "0 0\n"], "outputs": ["3\n", "42\n", "0\n"]}
    failing = {  # program -> statuses it must get
        "while True:\n    pass\n": ["timeout", "not_run", "not_run"],
        "print(3)\n": ["passed", "wrong_answer", "not_run"],
        "a, b = map(int, input().split())\nprint(a + b if a else -1)\n": ["passed", "passed", "wrong_answer"],
        "import sys\nsys.exit(1)\n": ["error", "not_run", "not_run"],
    }
    stopping = dataclasses.replace(settings, stop_on_failure=True)
    with CodeVerifier(stopping, workers=1) as verifier:
        for _ in range(3):
            for program, statuses in failing.items():
                started = time.monotonic()
                verdict = verifier.verify(apps_suite(program, three))
                assert [t.status for t in verdict.tests] == statuses, (program, verdict)
                assert time.monotonic() - started < stopping.test_timeout + SLACK_SECONDS
                verdict = verifier.verify(apps_suite(RIGHT, three))
                assert verdict.passed, (program, verdict)
        assert len(verifier._idle) == 1 and verifier._idle[0].programs == 24  # one sandbox served them all


def test_early_exit_with_the_right_output_passes_stdio(settings):
    for ending in ("import sys\nsys.exit(0)\n", "import os, sys\nsys.stdout.flush()\nos._exit(0)\n"):
        assert run(RIGHT + ending, settings).passed


@pytest.mark.parametrize("trick", [
    "import sys\nsys.exit(0)\n",
    "import os\nos._exit(0)\n",
    "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)\n",
    "raise SystemExit\n",
    "import os, json\nos.write(3, (json.dumps({'test': 0, 'token': 'guess'}) + '\\n').encode())\nos._exit(0)\n",
])
def test_leaving_before_the_asserts_is_a_failure(trick, settings):
    problem = {"task_id": "t/0", "entry_point": "add", "prompt": "def add(a, b):\n",
               "test": "def check(candidate):\n    assert candidate(1, 2) == 4\n"}
    verdict = run_suite(humaneval_suite(problem, "    return a + b\n" + trick), settings)
    assert not verdict.passed
    assert verdict.tests[0].status in ("exited_early", "error"), verdict


def test_the_environment_is_scrubbed(settings, monkeypatch):
    monkeypatch.setenv("PRIMEKIT_TEST_SECRET", "hunter2")
    program = ("import os\nprint(' '.join(sorted(os.environ)))\n"
               "for pid in ('self', '1', str(os.getppid())):\n    try:\n"
               "        print(open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace'))\n"
               "    except OSError as error:\n        print(pid, 'unreadable')\n")
    suite = TestSuite("stdio", program, ({"input": ""},), ("unused",))
    verdict = run_suite(suite, settings)
    assert verdict.tests[0].status == "wrong_answer"
    assert "hunter2" not in verdict.tests[0].detail and "PRIMEKIT_TEST_SECRET" not in verdict.tests[0].detail


def test_no_network_not_even_to_this_machine(settings):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    program = ("import socket\nfor host in ('127.0.0.1', '1.1.1.1'):\n    try:\n"
               f"        socket.create_connection((host, {port}), timeout=0.5)\n        print('connected')\n"
               "    except OSError as error:\n        print('refused')\n")
    suite = TestSuite("stdio", program, ({"input": ""},), ("refused\nrefused",))
    verdict = run_suite(suite, settings)
    server.close()
    assert verdict.passed, verdict
    assert accepted == []


def test_nothing_outside_its_directory_changes(settings, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.chmod(tmp_path, 0o777)
    os.chmod(victim, 0o666)
    import sys

    targets = [str(victim), str(tmp_path / "new.txt"), sys.prefix + "/new.txt", "/usr/new.txt",
               str(Path(sys_module_file()).parent / "new.txt")]
    program = ("import os, shutil\nresults = []\n"
               f"for path in {targets!r}:\n"
               "    for action in (lambda: os.remove(path), lambda: open(path, 'w').write('x')):\n"
               "        try:\n            action()\n            results.append('done')\n"
               "        except OSError:\n            results.append('denied')\n"
               "open('inside.txt', 'w').write('fine')\nprint(' '.join(results), open('inside.txt').read())\n")
    suite = TestSuite("stdio", program, ({"input": ""},), (" ".join(["denied"] * 2 * len(targets)) + " fine",))
    verdict = run_suite(suite, settings)
    assert verdict.passed, verdict
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "new.txt").exists() and not Path(sys.prefix, "new.txt").exists()


def sys_module_file() -> str:
    return sandbox_module.__file__


def test_the_expected_output_never_enters_the_sandbox(settings):
    """A program that searches its own memory and files for the expected answer finds nothing."""
    secret = "expected-answer-7f3a9"
    program = ("import gc, os\nfound = any('7f3a9' in repr(o) for o in gc.get_objects() if isinstance(o, (str, dict, list)))\n"
               "for root, _, files in os.walk('/box'):\n    for name in files:\n"
               "        found = found or '7f3a9' in open(os.path.join(root, name), errors='ignore').read()\n"
               "print('found' if found else 'clean')\n")
    suite = TestSuite("stdio", program, ({"input": ""},), (secret,))
    verdict = run_suite(suite, settings)
    assert "printed 'clean" in verdict.tests[0].detail, verdict


def test_refuses_in_one_line_without_bubblewrap(monkeypatch):
    monkeypatch.setattr(launch.shutil, "which", lambda name: None)
    launch._bwrap_problem.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as caught:
            CodeVerifier(SandboxSettings(backend="auto"))
    finally:
        launch._bwrap_problem.cache_clear()
    message = str(caught.value)
    assert "\n" not in message and "bubblewrap" in message and "PRIMEKIT_CODE_SANDBOX=process" in message


def test_the_weaker_process_backend_still_limits_time_output_and_exits(tmp_path):
    settings = SandboxSettings(backend="process", **LIMITS)
    try:
        check_sandbox(settings)
    except SandboxUnavailable:  # as root, programs run as nobody, who may not read this interpreter
        settings = SandboxSettings(backend="process", python="/usr/bin/python3", **LIMITS)
        check_sandbox(settings)
    assert run(RIGHT, settings).passed
    assert {t.status for t in run("while True:\n    pass\n", settings).tests} <= {"timeout", "not_run"}
    assert {t.status for t in run("while True:\n    print('x' * 1000)\n", settings).tests} <= {"output_limit",
                                                                                               "not_run"}
    assert not run("x = bytearray(10 ** 12)\n", settings).passed
    assert wait_for_no_sandbox_processes() == []
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("primekit-code-*"))


def test_an_interpreter_under_tmp_is_still_seen_inside_the_sandbox(settings, tmp_path):
    """The sandbox's /tmp is its own empty tmpfs; a checkout (and its virtualenv) under the host's
    /tmp is bound elsewhere, so that it runs and the scratch space stays empty for reuse."""
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    in_tmp = dataclasses.replace(settings, python=str(venv / "bin" / "python"))
    assert check_sandbox(in_tmp) == "bwrap"
    looks = "import os, sys\nprint(os.listdir('/tmp'), sys.prefix.endswith('/venv'))\n"
    with CodeVerifier(in_tmp, workers=1) as verifier:
        for _ in range(2):
            assert verifier.verify(TestSuite("stdio", looks, ({"input": ""},), ("[] True",))).passed
        assert len(verifier._idle) == 1 and verifier._idle[0].programs == 2  # one clean sandbox served both
