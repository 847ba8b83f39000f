"""The program that runs *inside* the code sandbox: it receives test suites, runs the candidate
program in child processes, and streams what happened back to the verifier. Standard library only;
it is started as a script (``python -I <this folder>``), its modules import one another as
top-level modules (this folder is first on ``sys.path``), and it never imports primekit.

Trust boundary: these files are ours, the candidate program is not. Everything the candidate can
touch is treated as data:

* the verifier keeps the expected outputs; only the inputs come in here, so no amount of
  introspection by the candidate can find an expected answer in this process;
* stdin/stdout and call tests: the candidate runs only in forked children. Before it runs, a child
  closes the report channel and every other descriptor it does not need and drops every
  capability; the harness is non-dumpable, so a child cannot reach the report channel through
  ``/proc/<pid>/fd`` or ptrace. A child reports its test on its own result pipe with that test's
  secret token, written only after the test code *returned*; the harness passes on only the first
  well-formed record of the child's own test;
* assert-based tests (HumanEval, MBPP, LeetCode): the tests run in a process of their own and call
  the program, which runs in another, with plain values (``codec``, ``tester``); the program's
  process is forked from a zygote started before the harness read any suite;
* after each program, every other process of the sandbox but the zygote is killed, so nothing a
  test started survives into the next one. In the pid namespace the harness is its init (pid 1):
  it ignores SIGINT and SIGTERM, and its end kills every process of the namespace.

Protocol: a first JSON line with the limits (the harness isolates itself, then starts the zygote),
then one JSON line per suite on stdin; JSON lines on stdout (events): ``{"event": "fatal", ...}`` if
a step of isolation failed (the harness then exits), ``{"event": "compile_error", ...}``,
``{"event": "record", "line": ...}`` for a call child's record of its test, ``{"event": "child",
...}`` when a stdin/stdout or call child ended, ``{"event": "script", ...}`` with the verdicts of an
assert-based suite, and ``{"event": "end"}`` once the suite is done and the scratch folders are
empty again. A suite with ``stop_on_failure`` runs in lockstep: a child event with ``"awaiting":
true`` means the harness waits for the verifier's answer, the line ``next`` (run the next test) or
``stop`` (skip the rest), before it runs anything else; the harness asks exactly once per test and
reads exactly one answer, so the tests after a failure are never started and no answer can be left
on stdin to be taken for the next suite (assert-based suites stop in their tests' process). A
sandbox serves suites one after another, so that starting namespaces and an interpreter is paid
once per many programs.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import time

from isolation import fresh_ipc_namespace, isolate, load_libc, set_limits
from watch import start_zygote, watch_child, watch_script, zygote_ready

IDLE_EXIT_SECONDS = 120.0  # a sandbox nobody has used for this long exits by itself
#: Modules the APPS-style prelude imports; loading them once here makes each child's imports free.
WARM_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                "statistics", "itertools", "functools", "operator", "io", "sys", "json", "typing")


class _Reporter:
    """Writes the events for the verifier, one JSON line each, on the report channel."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, event: str, **fields) -> None:
        data = (json.dumps({"event": event, **fields}) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


def _run_suite(suite: dict, limits: dict, report: _Reporter, verifier: _Input) -> None:
    """Run one suite: an assert-based one in one go, the others one child per test (in lockstep
    with the verifier under ``stop_on_failure``), all within the program's time limit."""
    started = time.monotonic()
    try:
        code = compile(suite["program"], "solution.py", "exec")
    except BaseException as error:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
        report("compile_error", message=f"{type(error).__name__}: {error}"[:2000])
        return
    deadline = started + limits["program_timeout"]
    if suite["mode"] == "script":
        outcome = watch_script(suite, limits, deadline)
        report("script", **outcome)
        return
    groups = [[i] for i in range(len(suite["tests"]))]
    lockstep = bool(suite.get("stop_on_failure"))
    for position, tests in enumerate(groups):
        if time.monotonic() >= deadline or verifier.gone():
            break
        outcome, program_time_out = watch_child(suite, tests, [suite["tokens"][i] for i in tests], code, limits,
                                                report, deadline)
        awaiting = lockstep and not program_time_out and position + 1 < len(groups)
        report("child", **outcome, awaiting=awaiting)
        if program_time_out:
            break
        if awaiting:
            asked = time.monotonic()
            if verifier.next_line(IDLE_EXIT_SECONDS) != b"next":
                break  # "stop", or the verifier is gone
            deadline += time.monotonic() - asked  # the verifier's time is not the program's


def _remove_contents(folder: str) -> bool:
    """Empty a scratch folder (even of entries a program made read-only); False if something stays."""
    def retry_writable(function, path, _):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
            function(path)
        except OSError:
            pass

    try:
        os.chmod(folder, 0o777)
    except OSError:
        pass  # a mount point we do not own: its mode is fixed anyway
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, onerror=retry_writable)
            else:
                os.unlink(entry.path)
        except OSError:
            retry_writable(os.unlink, entry.path, None)
    try:
        return not os.listdir(folder)
    except OSError:
        return False


class _Input:
    """Lines from the verifier on stdin: a suite when idle; while a ``stop_on_failure`` suite runs,
    the answer (``next`` or ``stop``) to each child event that awaits one, and nothing else."""

    def __init__(self) -> None:
        self.poller = select.poll()
        self.poller.register(0, select.POLLIN | select.POLLHUP)
        self.buffer = b""
        self.closed = False

    def _read(self, wait_ms: int) -> bool:
        if self.closed or not self.poller.poll(wait_ms):
            return False
        chunk = os.read(0, 1 << 20)
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        return True

    def next_line(self, idle_seconds: float) -> bytes | None:
        """The next line, or None when stdin closes or stays silent for ``idle_seconds``; a
        verifier silent that long counts as gone (so a late line is never read as something else)."""
        while b"\n" not in self.buffer:
            if not self._read(int(idle_seconds * 1000)):
                self.closed = True
                return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def gone(self) -> bool:
        """Whether the verifier has closed stdin (its lines stay buffered, none is consumed here)."""
        while self._read(0):
            pass
        return self.closed


def main() -> None:
    """Serve suites, one JSON line each, until stdin closes: each gets a fresh process tree, a fresh
    IPC namespace and empty scratch folders. The first suite's limits hold for the sandbox's
    lifetime; if any step of isolation fails, the harness reports it and exits."""
    for number in (signal.SIGINT, signal.SIGTERM):  # no program (nor a stray Ctrl-C) ends pid 1
        signal.signal(number, signal.SIG_IGN)
    report = _Reporter(os.dup(1))
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints of ours go nowhere
    libc = load_libc()
    first = _first_line()
    if not first:
        return
    limits = json.loads(first)["limits"]  # before any suite: the zygote is forked from a harness that saw none
    try:
        isolate(libc, limits)
    except OSError as error:
        report("fatal", message=str(error)[:300])
        sys.exit(1)
    set_limits(limits)
    for name in WARM_MODULES:
        __import__(name)
    start_zygote(fresh_ipc=limits["pid_namespace"])
    stdin = _Input()
    while (suite := _next_suite(stdin)) is not None:
        if limits["pid_namespace"]:
            try:
                fresh_ipc_namespace(libc)
            except OSError as error:
                report("fatal", message=str(error)[:300])
                sys.exit(1)
        _run_suite(suite, limits, report, stdin)
        suite.clear()
        clean = all([_remove_contents(folder) for folder in limits["scratch"]]) and zygote_ready()
        report("end", clean=clean)


def _first_line() -> bytes:
    """The verifier's first line (the limits), read a byte at a time: not one byte of the suite
    that follows it is in this process when the zygote is forked."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            return b""
        line += byte
    return bytes(line)


def _next_suite(stdin: _Input) -> dict | None:
    """The next suite (the raw line dies with this frame: no later candidate finds it on the stack)."""
    line = stdin.next_line(IDLE_EXIT_SECONDS)
    return None if line is None else json.loads(line)


def probe(limits_json: str) -> None:
    """Apply the isolation of ``limits_json`` and exit: 0 if every step worked, else 1 with the
    failing step on stderr (how the verifier checks a machine before it trusts it)."""
    limits, libc = json.loads(limits_json), load_libc()
    try:
        isolate(libc, limits)
        set_limits(limits)
        if limits["pid_namespace"]:
            fresh_ipc_namespace(libc)
        for name in WARM_MODULES:
            __import__(name)
    except OSError as error:
        sys.stderr.write(f"{error}\n")
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:  # can this interpreter import what the harness needs (and isolate)?
        if len(sys.argv) > 2:
            probe(sys.argv[2])
        else:
            for name in WARM_MODULES:
                __import__(name)
    else:
        main()
