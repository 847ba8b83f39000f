"""Run a test suite in a sandbox and judge it.

Each program runs in a process tree of its own, outside the verifier's process:

``bwrap`` backend (default; Debian package ``bubblewrap``)
    new pid, network, IPC, UTS and cgroup namespaces (plus a user namespace when not started by
    root); a read-only view of only what Python needs (``/usr``, the interpreter's prefix and
    virtualenv, its package folders hidden but for ``SandboxSettings.packages``) on an otherwise
    empty root; an empty environment apart from a few fixed variables; no capabilities; a memory
    cgroup of its own (``cgroup.py``); the command line is built in ``launch.py``. Inside, the
    harness (the ``harness`` folder, the pid namespace's init) becomes ``nobody`` in user and mount
    namespaces of its own, mounts the working directory (``/box``), ``/tmp`` and ``/dev/shm`` as
    tmpfs with a size and an inode limit (emptied after every program), joins a fresh session
    keyring, blocks the key system calls (seccomp), sets the rlimits (address space, file size,
    open files, processes, core 0; CPU per test), and runs each program in a fresh IPC namespace
    and process tree that it kills as a whole. Every one of these steps must succeed, or the
    sandbox refuses (:class:`SandboxUnavailable`). The whole sandbox dies
    with its pid namespace when the harness exits or the verifier kills it.

``process`` backend (weaker; opt-in with ``backend="process"`` or ``PRIMEKIT_CODE_SANDBOX=process``)
    for machines without namespaces: the same harness, rlimits, memory cgroup, scrubbed
    environment, fresh temporary directory (removed afterwards) and process-group kills, but **no**
    network, IPC or keyring isolation, **no** read-only view of the filesystem (only ``nobody``'s
    permissions when the verifier runs as root), and a child that leaves its process group
    (``setsid``) can outlive its test.

The limits go in first, alone, as a JSON line on stdin, then the suites, one line each; events come
back on stdout and are read with a size bound and a deadline, every one as hostile, and judged
in ``judge.py``. Expected
outputs never enter the sandbox: they are compared here; assert-based tests run in a process of
their own that calls the program's functions by value (see ``harness``). A sandbox serves many
programs in turn (:class:`Sandbox`), each in a fresh process tree with emptied scratch folders,
and is retired at the first run that does not end cleanly.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from primekit.verifiers.code.cgroup import SandboxCgroup
from primekit.verifiers.code.judge import Judge, clip, event_text
from primekit.verifiers.code.launch import HARNESS, NOBODY, bwrap_command, check_sandbox
from primekit.verifiers.code.settings import ENVIRONMENT, SandboxSettings, SandboxUnavailable
from primekit.verifiers.code.suite import TestSuite, Verdict

__all__ = ["Sandbox", "run_suite"]

#: Processes of a sandbox besides its programs' (bwrap, the harness, the tests' process).
SANDBOX_OWN_PROCESSES = 4
#: Seconds allowed beyond the program's time limit for the sandbox and interpreter to start.
STARTUP_GRACE_SECONDS = 10.0


class Sandbox:
    """One sandbox process that runs suites one after another.

    Starting namespaces and an interpreter costs far more than forking a child of the ready
    harness, so a sandbox is reused for up to ``MAX_PROGRAMS`` programs as
    long as each run ends cleanly (the harness reported the end and emptied its scratch folders);
    anything else (deadline, garbled or oversized report, a dead harness) retires it. With
    ``stop_on_failure`` the harness waits after each test for the verifier's ``next`` or ``stop``
    (the verifier alone can judge a test), so the tests after the first failure never start and
    each answer is read within its own program. Every program still gets a fresh process tree and
    working directory.
    """

    MAX_PROGRAMS = 200

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.backend = check_sandbox(settings)
        self.workdir: str | None = None
        self.stderr = b""
        self.programs = 0
        self.reusable = True
        self._buffer = b""
        self.cgroup: SandboxCgroup | None = None
        self.fatal: str | None = None
        if self.backend == "bwrap":
            command, cwd, env = bwrap_command(settings), None, {}
            limits = settings.bwrap_limits()
        else:
            limits = settings.limits(pid_namespace=False)
            python = settings.python or sys.executable
            command, env = [python, "-I", str(HARNESS)], dict(ENVIRONMENT)
            self.workdir = cwd = tempfile.mkdtemp(prefix="primekit-code-")
            env["HOME"] = env["TMPDIR"] = cwd
            if os.geteuid() == 0:
                os.chown(cwd, NOBODY, NOBODY)
            limits["scratch"] = [cwd]
        self.limits = limits
        if settings.memory_bound == "cgroup":
            try:
                self.cgroup = SandboxCgroup(settings.memory_mb << 20, settings.max_processes + SANDBOX_OWN_PROCESSES)
            except OSError as error:
                if self.workdir is not None:
                    _remove_tree(self.workdir)
                raise SandboxUnavailable(f"code sandbox unavailable: cannot make its memory cgroup ({error})") from None
            command = self.cgroup.join_command(command)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        cwd=cwd, env=env, start_new_session=True)
        try:
            self._send({"limits": limits})  # first, alone: the harness isolates itself before any suite
        except OSError:
            pass  # a sandbox that died at once: its first run says so

    def alive(self) -> bool:
        return self.process.poll() is None

    def _send(self, payload: dict[str, Any]) -> None:
        self.process.stdin.write(json.dumps(payload).encode() + b"\n")
        self.process.stdin.flush()

    def _answer(self, go_on: bool) -> None:
        """Answer a harness that waits after a test of a ``stop_on_failure`` suite."""
        self.process.stdin.write(b"next\n" if go_on else b"stop\n")
        self.process.stdin.flush()

    def _events(self, deadline: float, max_bytes):
        """Parsed event lines of the current suite until its end, the deadline, or more output than
        ``max_bytes()`` allows (a budget that grows with the tests actually run)."""
        poller = select.poll()
        streams = {self.process.stdout.fileno(): "out", self.process.stderr.fileno(): "err"}
        for fd in streams:
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        total = 0
        while True:
            while b"\n" in self._buffer:
                line, _, self._buffer = self._buffer.partition(b"\n")
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    event = None
                if type(event) is not dict:
                    yield {"event": "garbled"}
                    return
                yield event
                if event.get("event") == "end":
                    return
            if not streams:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield {"event": "deadline"}
                return
            for fd, _ in poller.poll(remaining * 1000):
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    del streams[fd]
                    continue
                total += len(chunk)
                if total > max_bytes():
                    yield {"event": "too_much_output"}
                    return
                if streams[fd] == "err":
                    self.stderr = (self.stderr + chunk)[-4096:]
                else:
                    self._buffer += chunk

    def run(self, suite: TestSuite) -> Verdict:
        """Run and judge ``suite`` (see the module docstring)."""
        settings = self.settings
        started = time.monotonic()
        if not suite.tests:
            return Verdict(error="no tests to run")
        if not suite.program.strip():
            return Verdict(error="no program to run (empty response or no code block)")
        tokens = [secrets.token_hex(16) for _ in suite.tests]
        self.programs += 1
        self.reusable = False  # until this run has ended cleanly
        judge = Judge(suite, tokens)
        sandbox_error: str | None = None
        ended = False
        payload = {"mode": suite.mode, "program": suite.program, "tests": list(suite.tests),
                   "fn_name": suite.fn_name, "solution_class": suite.solution_class,
                   "stop_on_failure": settings.stop_on_failure}
        if suite.mode == "script":
            payload.update(prelude=suite.prelude, targets=list(suite.targets))
        else:
            payload["tokens"] = tokens
        try:
            self._send(payload)
        except OSError:
            sandbox_error = "the sandbox stopped before the program was sent"
        else:
            sandbox_error, ended = self._follow(judge, started)
            if self.fatal is not None:
                self.reusable = False
                raise SandboxUnavailable(f"code sandbox unavailable: a step of its isolation failed ({self.fatal})")
        self.reusable = ended and sandbox_error is None and self.programs < self.MAX_PROGRAMS
        return judge.verdict(time.monotonic() - started, sandbox_error)

    def _follow(self, judge: Judge, started: float) -> tuple[str | None, bool]:
        """Feed the harness's events to ``judge`` until the end of the suite; (why the run did not
        end cleanly, or None; whether the harness reported a clean end). Every event is read as
        hostile: anything malformed ends the run as a sandbox failure, never as an exception."""
        settings, tests = self.settings, len(judge.suite.tests)
        deadline = started + settings.program_timeout + STARTUP_GRACE_SECONDS
        per_test_bytes = 8 * settings.max_output_kb * 1024 + (64 << 10)
        if judge.suite.mode == "script":
            def budget() -> int:
                return (1 << 20) + tests * (8 << 10)
        else:
            def budget() -> int:  # the tests run so far and the one running
                return (1 << 20) + (len(judge.results) + 1) * per_test_bytes
        try:
            for event in self._events(deadline, budget):
                kind = event.get("event")
                if kind == "deadline":
                    return "the program's time limit ran out", False
                if kind in ("too_much_output", "garbled"):
                    return "the sandbox's report was too long or garbled", False
                if kind == "end":
                    return None, event.get("clean") is True
                if kind == "fatal":
                    self.fatal = clip(event_text(event.get("message"))).replace("\n", " ")
                    return f"the sandbox could not isolate the program ({self.fatal})", False
                judge.on_event(event)
                if event.get("awaiting") is True:  # the harness waits for this answer before anything else
                    try:
                        self._answer(go_on=not judge.failed())
                    except OSError:
                        return "the sandbox stopped before it was told to go on", False
        except Exception as error:  # a report no rule above foresaw: the sandbox is not trusted again
            return f"the sandbox's report was unreadable ({type(error).__name__})", False
        reason = self.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return "the sandbox stopped early" + (f" ({reason[-1][:200]})" if reason else ""), False

    def close(self) -> None:
        """End the sandbox now, even in the middle of a program: the started process's group and
        the group of each of its children, which lead groups of their own (under bwrap the harness,
        the pid namespace's init, whose end takes the whole namespace with it; under the process
        backend the child running the current test)."""
        children = _children(self.process.pid)
        for group in (*children, self.process.pid):
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        # whatever is left in its cgroup (a harness whose bwrap died first is no child of bwrap's)
        members = [pid for pid in (self.cgroup.pids() if self.cgroup is not None else []) if pid != self.process.pid]
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait()
        _reap_orphans(list(dict.fromkeys([*children, *members])))
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        if self.workdir is not None:
            _remove_tree(self.workdir)
        if self.cgroup is not None:
            self.cgroup.remove()


def _reap_orphans(pids: list[int], wait_seconds: float = 10.0) -> None:
    """Reap the killed children of a sandbox's first process that became ours (when this process
    is pid 1 or a subreaper, orphans are re-parented here): none is left as a zombie. A killed
    pid namespace's init can take a while to end (it first ends every process of its namespace),
    so each is watched until it ends or is reaped, up to ``wait_seconds`` in all."""
    deadline = time.monotonic() + wait_seconds
    pending = list(pids)
    while pending:
        for pid in list(pending):
            state, parent = _state_and_parent(pid)
            if parent == os.getpid():
                try:
                    reaped = os.waitpid(pid, os.WNOHANG)[0] == pid
                except ChildProcessError:
                    reaped = True
                if reaped:
                    pending.remove(pid)
            elif state is None or state == "Z":
                pending.remove(pid)  # gone, or another process's zombie to reap
        if pending and time.monotonic() > deadline:
            return
        if pending:
            time.sleep(0.002)


def _state_and_parent(pid: int) -> tuple[str | None, int | None]:
    """(state letter, parent pid) of process ``pid``; (None, None) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, ValueError, IndexError):
        return None, None


def _children(pid: int) -> list[int]:
    """The live children of process ``pid`` (empty once it has ended)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _remove_tree(path: str) -> None:
    """Remove a process-backend working directory, even files a program made read-only."""
    def make_writable(function, target, _):
        try:
            os.chmod(os.path.dirname(target), 0o777)
            os.chmod(target, 0o777)
        except OSError:
            pass
        function(target)

    shutil.rmtree(path, onerror=make_writable)


def run_suite(suite: TestSuite, settings: SandboxSettings | None = None) -> Verdict:
    """Run ``suite`` in a sandbox of its own and judge every test (see the module docstring)."""
    sandbox = Sandbox(settings or SandboxSettings())
    try:
        return sandbox.run(suite)
    finally:
        sandbox.close()
