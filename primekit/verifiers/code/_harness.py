"""The program that runs *inside* the code sandbox: it receives a test suite, runs the candidate
program once per test (or once for a script of tests) in child processes, and streams what
happened back to the verifier. Standard library only; it is started as a script
(``python -I _harness.py``) and never imports primekit.

Trust boundary: this file is ours, the candidate program is not. Everything the candidate can
touch is treated as data:

* the verifier keeps the expected outputs; only the inputs come in here, so no amount of
  introspection by the candidate can find an expected answer in this process;
* the candidate runs only in forked children. Before it runs, a child closes the report channel
  and every other descriptor it does not need, and the harness is made non-dumpable, so a child
  cannot reach the report channel through ``/proc/<pid>/fd`` or ptrace;
* a child reports each finished test on its own result pipe with that test's secret token, written
  only after the test code *returned*; an early ``sys.exit(0)``, ``os._exit(0)`` or ``atexit`` hook
  leaves no token, so the test counts as not finished;
* after each child, every other process of the sandbox is killed (``kill(-1)`` inside the pid
  namespace, the child's process group otherwise), so nothing a test started survives into the
  next one. In the pid namespace the harness is its init (pid 1): programs cannot signal it, and
  its end kills every process of the namespace.

Protocol: one JSON line per suite on stdin; JSON lines on stdout (events):
``{"event": "compile_error", ...}``, ``{"event": "record", "line": ...}`` for each line a child wrote
on its result pipe, ``{"event": "child", ...}`` when a child ended, and ``{"event": "end"}`` once the
suite is done and the scratch folders are empty again. A suite with ``stop_on_failure`` runs in
lockstep: a child event with ``"awaiting": true`` means the harness waits for the verifier's answer,
the line ``next`` (run the next test) or ``stop`` (skip the rest), before it runs anything else. Only
the verifier can judge a test (the expected outputs stay with it), so it decides; the harness asks
exactly once per test and reads exactly one answer, so the tests after a failure are never started
and no answer can be left on stdin to be taken for the next suite. A sandbox serves suites one after
another (each program in a fresh process tree forked from this clean harness, none of it surviving
the program), so that starting namespaces and an interpreter is paid once per many programs.
"""

from __future__ import annotations

import builtins
import ctypes
import gc
import io
import json
import math
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

NOBODY = 65534
CLONE_NEWUSER = 0x10000000
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
STDERR_TAIL_BYTES = 4096
IDLE_EXIT_SECONDS = 120.0  # a sandbox nobody has used for this long exits by itself
READ_CHUNK = 1 << 16
#: Modules the APPS-style prelude imports; loading them once here makes each child's imports free.
WARM_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                "statistics", "itertools", "functools", "operator", "io", "sys", "json", "typing")


# ------------------------------------------------------------------------------------------------
# privileges and limits (harness side, before any candidate code exists in this process)


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _drop_privileges(libc) -> None:
    """Become an unprivileged user in a user namespace of our own, with no capabilities.

    As root (bubblewrap started by root keeps CAP_SETUID so that this step can happen) the harness
    first becomes ``nobody``: the kernel never enforces the process limit on root. A fresh user
    namespace then gives the sandbox its own process count, so one sandbox's fork bomb does not
    use up the limit of the others running beside it.
    """
    if os.getuid() == 0 or os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    libc.unshare(CLONE_NEWUSER)  # best effort: without it the process count is per uid
    # The creator of a user namespace holds every capability inside it; drop them all.
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    libc.capset(header, data)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _set_limits(limits: dict) -> None:
    """Limits every process of the sandbox inherits (the CPU limit is set per child)."""
    wanted = {
        resource.RLIMIT_AS: limits["memory_bytes"],
        resource.RLIMIT_FSIZE: limits["max_file_bytes"],
        resource.RLIMIT_NOFILE: limits["max_open_files"],
        resource.RLIMIT_NPROC: limits["max_processes"],
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_STACK: limits["stack_bytes"],
    }
    for which, value in wanted.items():
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


# ------------------------------------------------------------------------------------------------
# the child: runs candidate code


def _fresh_stdio() -> None:
    """New Python stdio objects on fds 0-2 (the inherited ones may hold the harness's buffers)."""
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8",
                                 errors="replace")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                  errors="replace")
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8",
                                  errors="replace", line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _json_value(value):
    """The candidate's return value as JSON-ready data: tuples become lists, anything that is not
    plain data (including subclasses that could redefine equality) is refused."""
    if value is None or type(value) in (bool, str):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else repr(value)
    if type(value) in (list, tuple):
        return [_json_value(item) for item in value]
    if type(value) is dict:
        return {str(key) if type(key) in (str, int, float, bool) else _refuse(key): _json_value(item)
                for key, item in value.items()}
    return _refuse(value)


def _refuse(value):
    raise TypeError(f"the result is a {type(value).__name__}, not plain data (int, float, str, bool, "
                    "None, list, tuple, dict)")


def _run_child(suite: dict, tests: list[int], tokens: list[str], code, result_fd: int) -> None:
    """Body of a child process; never returns."""
    write, exit_now, dumps = os.write, os._exit, json.dumps  # kept before the candidate can patch them
    mode = suite["mode"]
    fn_name = suite.get("fn_name")
    solution_class = bool(suite.get("solution_class"))
    specs = [suite["tests"][i] for i in tests]
    suite.clear()  # the other tests' inputs and tokens: nothing but this child's own stays reachable
    gc.collect()
    namespace = {"__name__": "__main__" if mode == "stdio" else "solution", "__builtins__": builtins,
                 "__file__": "solution.py"}

    def report(index: int, token: str, **extra) -> None:
        write(result_fd, (dumps({"test": index, "token": token, **extra}) + "\n").encode())

    try:
        exec(code, namespace)
        if mode == "stdio":
            _flush_stdio()
            exit_now(0)
        if mode == "call":
            target = _call_target(namespace, fn_name, solution_class)
            if target is None:
                report(tests[0], tokens[0], missing=fn_name)
                _flush_stdio()
                exit_now(0)
            spec = specs[0]
            value = _json_value(target(*spec["args"]))
            report(tests[0], tokens[0], value=value)
            _flush_stdio()
            exit_now(0)
        for index, token, spec in zip(tests, tokens, specs):  # script: one snippet after another
            exec(compile(spec["code"], f"test_{index}.py", "exec"), namespace)
            report(index, token)
        _flush_stdio()
        exit_now(0)
    except SystemExit as stop:
        _flush_stdio()
        if mode == "stdio":
            exit_now(0 if stop.code in (None, 0) else 1)
        sys.stderr.write(f"SystemExit({stop.code!r}) before the test finished\n")
        _flush_stdio()
        exit_now(3)
    except BaseException:
        try:
            traceback.print_exc(limit=5)
        except BaseException:
            pass
        _flush_stdio()
        exit_now(1)


def _call_target(namespace: dict, fn_name: str, solution_class: bool):
    """``Solution().fn_name`` when the program defines a ``Solution`` class (LeetCode style),
    else the module-level function ``fn_name``; None when neither exists."""
    if solution_class and isinstance(namespace.get("Solution"), type):
        target = getattr(namespace["Solution"](), fn_name, None)
    else:
        target = namespace.get(fn_name)
    return target if callable(target) else None


def _child_setup(stdin_fd: int, stdout_fd: int, stderr_fd: int, keep_fd: int, cpu_seconds: float) -> int:
    """In the child, before candidate code: own process group, stdio on the test's pipes, every other
    descriptor closed (the report channel included), a CPU limit. Returns the result fd (now 3)."""
    os.setpgid(0, 0)
    os.dup2(stdin_fd, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    os.dup2(keep_fd, 3)
    os.closerange(4, 1 << 16)
    seconds = max(1, math.ceil(cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    _fresh_stdio()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return 3


# ------------------------------------------------------------------------------------------------
# the harness: forks children, watches them, reports


class _Reporter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, event: str, **fields) -> None:
        data = (json.dumps({"event": event, **fields}) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


def _input_fd(text: str) -> int:
    """A readable, seekable descriptor holding a test's standard input (memory only, no disk)."""
    fd = os.memfd_create("stdin")
    data = text.encode("utf-8", errors="replace")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _kill_all(child_pid: int, pid_namespace: bool) -> None:
    """Kill the child and anything it started."""
    if pid_namespace:
        try:
            os.kill(-1, signal.SIGKILL)  # every process of this namespace but us and its init
        except ProcessLookupError:
            pass
    else:
        try:
            os.killpg(child_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(wait_seconds: float) -> None:
    """Collect dead children. As the namespace's init every orphan is ours: after ``kill(-1)`` wait
    (up to ``wait_seconds``) until all are gone, so that none lingers as a zombie."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.001)


def _watch_child(suite, tests, tokens, code, limits, report: _Reporter, deadline: float) -> tuple[dict, bool]:
    """Run one child for ``tests`` and forward its result records; return what the child did (the
    fields of its "child" event) and whether the program's time ran out."""
    mode = suite["mode"]
    stdin_fd = _input_fd(suite["tests"][tests[0]].get("input", "")) if mode == "stdio" else os.open(
        os.devnull, os.O_RDONLY)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    test_seconds = limits["test_timeout"]
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        try:
            result_fd = _child_setup(stdin_fd, out_w, err_w, res_w, test_seconds * len(tests) + 1)
            _run_child(suite, tests, tokens, code, result_fd)
        finally:
            os._exit(4)
    for fd in (stdin_fd, out_w, err_w, res_w):
        os.close(fd)

    max_output = limits["max_output_bytes"]
    keep_stdout = mode == "stdio"
    stdout, stderr, results = bytearray(), bytearray(), bytearray()
    open_fds = {out_r: "stdout", err_r: "stderr", res_r: "results"}
    exited = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (*open_fds, exited):
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    test_deadline = min(deadline, started + test_seconds)
    child_done = timed_out = over_limit = program_time_out = False
    while open_fds and not over_limit:
        now = time.monotonic()
        if child_done:
            wait_ms = 0  # the child is gone: take what is already in the pipes, then stop
        elif now >= test_deadline:
            timed_out, program_time_out = True, now >= deadline
            break
        else:
            wait_ms = max(1, int((test_deadline - now) * 1000))
        events = poller.poll(wait_ms)
        if child_done and not events:
            break  # only something the child left behind still holds a pipe open
        for fd, _ in events:
            if fd == exited:
                child_done = True
                poller.unregister(exited)
                continue
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                poller.unregister(fd)
                del open_fds[fd]
                os.close(fd)
                continue
            kind = open_fds[fd]
            if kind == "stdout":
                if keep_stdout:
                    stdout += chunk
                    over_limit = len(stdout) > max_output
            elif kind == "stderr":
                stderr = (stderr + chunk)[-STDERR_TAIL_BYTES:]
            else:
                results += chunk
                over_limit = over_limit or len(results) > max_output
                while b"\n" in results:
                    line, _, rest = bytes(results).partition(b"\n")
                    results = bytearray(rest)
                    report("record", line=line.decode("utf-8", errors="replace"))
                    # each finished snippet of a script gets a fresh per-test time budget
                    test_deadline = min(deadline, time.monotonic() + test_seconds)
    _kill_all(pid, limits["pid_namespace"])
    _, status = os.waitpid(pid, 0)
    _reap(1.0 if limits["pid_namespace"] else 0.0)
    for fd in (*open_fds, exited):
        os.close(fd)
    outcome = {"tests": tests, "seconds": round(time.monotonic() - started, 4),
               "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
               "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
               "timeout": timed_out and not over_limit, "output_limit": over_limit,
               "stdout": bytes(stdout[:max_output]).decode("utf-8", errors="replace"),
               "stderr": bytes(stderr).decode("utf-8", errors="replace")}
    return outcome, program_time_out


def _run_suite(suite: dict, limits: dict, report: _Reporter, verifier: _Input) -> None:
    started = time.monotonic()
    try:
        code = compile(suite["program"], "solution.py", "exec")
    except BaseException as error:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
        report("compile_error", message=f"{type(error).__name__}: {error}"[:2000])
        return
    deadline = started + limits["program_timeout"]
    if suite["mode"] == "script":
        groups = [list(range(len(suite["tests"])))]
    else:
        groups = [[i] for i in range(len(suite["tests"]))]
    lockstep = bool(suite.get("stop_on_failure"))
    for position, tests in enumerate(groups):
        if time.monotonic() >= deadline or verifier.gone():
            break
        outcome, program_time_out = _watch_child(suite, tests, [suite["tokens"][i] for i in tests], code, limits,
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


def _remove_shared_memory(libc) -> None:
    """Delete System V shared memory segments left in this sandbox's IPC namespace."""
    try:
        lines = open("/proc/sysvipc/shm").read().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) > 1 and fields[1].isdigit():
            libc.shmctl(int(fields[1]), 0, None)  # IPC_RMID


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
    """Serve suites, one JSON line each, until stdin closes: each gets a fresh process tree and
    empty scratch folders. The first suite's limits hold for the sandbox's lifetime."""
    report = _Reporter(os.dup(1))
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints of ours go nowhere
    libc, limits = _libc(), None
    stdin = _Input()
    while (line := stdin.next_line(IDLE_EXIT_SECONDS)) is not None:
        suite = json.loads(line)
        if limits is None:
            limits = suite["limits"]
            _drop_privileges(libc)
            if limits["pid_namespace"] and os.getpid() != 1:
                limits["pid_namespace"] = False  # not the pid namespace we were promised: kill by group only
            _set_limits(limits)
            for name in WARM_MODULES:
                __import__(name)
        _run_suite(suite, limits, report, stdin)
        clean = all([_remove_contents(folder) for folder in limits["scratch"]])
        if limits["pid_namespace"]:
            _remove_shared_memory(libc)
        report("end", clean=clean)


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:  # can this interpreter import what the harness needs?
        for name in WARM_MODULES:
            __import__(name)
    else:
        main()
