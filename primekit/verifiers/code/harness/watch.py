"""The harness's side of a program run: fork the processes of one test (or of an assert-based
suite), follow their pipes under the time limits, forward what they report, then kill everything
the program started and reap it."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from typing import Callable

from candidate import child_setup, run_child
from codec import READ_CHUNK
from tester import run_tests
from zygote import Zygote

STDERR_TAIL_BYTES = 4096


def _input_fd(text: str) -> int:
    """A readable, seekable descriptor holding a test's standard input (memory only, no disk)."""
    fd = os.memfd_create("stdin")
    data = text.encode("utf-8", errors="replace")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


#: Processes of the sandbox that outlive every program: the harness and its zygote.
_KEEP: set[int] = set()


def _kill_all(child_pid: int, pid_namespace: bool) -> None:
    """Kill the child and anything it started."""
    if pid_namespace:  # every process of this namespace but us and the zygote (reaped later)
        keep = _KEEP | {1, os.getpid()}
        for pid in [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) not in keep]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    else:
        try:
            os.killpg(child_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _clear_namespace(wait_seconds: float) -> None:
    """Kill every process of this pid namespace but the harness (its init) and the zygote, reap
    the ones that are ours, and repeat (up to ``wait_seconds``) until none is left: as init every
    orphan is ours, so none lingers as a zombie, and nothing a program started survives it."""
    deadline = time.monotonic() + wait_seconds
    keep = _KEEP | {1, os.getpid()}
    while True:
        others = [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) not in keep]
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _reap_now()
        if not others or time.monotonic() >= deadline:
            return
        time.sleep(0.0005)


def _reap_now() -> None:
    """Collect every child that has ended (never the zygote, which does not end)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _reap(wait_seconds: float) -> None:
    """After a program: in the pid namespace, until nothing of it is left (see _clear_namespace)."""
    if wait_seconds > 0:
        _clear_namespace(wait_seconds)
    else:
        _reap_now()


def _call_record(line: bytes, test: int, token: str) -> bool:
    """Whether a line of a child's result pipe is a record of its own test (with its token)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return type(record) is dict and record.get("test") == test and type(record.get("test")) is int \
        and record.get("token") == token


#: The zygote, once started; emptied when it fails (the sandbox is then retired).
_ZYGOTE: list[Zygote] = []


def start_zygote(fresh_ipc: bool) -> None:
    """Fork the zygote (before the harness reads any suite); it outlives every program."""
    zygote = Zygote(fresh_ipc)
    _KEEP.add(zygote.pid)
    _ZYGOTE.append(zygote)


def zygote_ready() -> bool:
    """Whether the zygote has served every program so far (a sandbox without it is not reused)."""
    return bool(_ZYGOTE)


def _follow(pid: int, readers: dict[int, Callable[[bytes], None]], deadline: Callable[[], float],
            finished: Callable[[], bool]) -> tuple[float | None, list[int]]:
    """Pass every chunk read from ``readers``' pipes to its reader until all of them close,
    ``finished()`` (checked between reads), or ``deadline()`` passes; once process ``pid`` has
    ended, only what is already in the pipes is taken (something it left behind may hold them
    open). Returns when the deadline ran out (None if it did not) and the descriptors still open:
    the caller closes them after the kill, so that no writer sees a closed pipe first."""
    open_fds = dict(readers)
    exited = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (*open_fds, exited):
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    done, ran_out = False, None
    while open_fds and not finished():
        now = time.monotonic()
        if done:
            wait_ms = 0  # the process is gone: take what is already in the pipes, then stop
        elif now >= deadline():
            ran_out = now
            break
        else:
            wait_ms = max(1, int((deadline() - now) * 1000))
        events = poller.poll(wait_ms)
        if done and not events:
            break
        for fd, _ in events:
            if fd == exited:
                done = True
                poller.unregister(exited)
                continue
            if fd not in open_fds:
                continue
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                poller.unregister(fd)
                del open_fds[fd]
                os.close(fd)
                continue
            open_fds[fd](chunk)
    return ran_out, [*open_fds, exited]


def watch_child(suite, tests, tokens, code, limits, report: Callable[..., None], deadline: float) -> tuple[dict, bool]:
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
            child_setup(stdin_fd, out_w, err_w, (res_w,), test_seconds * len(tests) + 1)
            run_child(suite, tests, tokens, code, 3)
        finally:
            os._exit(4)
    for fd in (stdin_fd, out_w, err_w, res_w):
        os.close(fd)

    max_output = limits["max_output_bytes"]
    stdout, stderr, results = bytearray(), bytearray(), bytearray()
    over_limit = recorded = False

    def read_stdout(chunk: bytes) -> None:
        nonlocal over_limit
        if mode == "stdio":
            stdout.extend(chunk)
            over_limit = over_limit or len(stdout) > max_output

    def read_stderr(chunk: bytes) -> None:
        nonlocal stderr
        stderr = (stderr + chunk)[-STDERR_TAIL_BYTES:]

    def read_results(chunk: bytes) -> None:
        nonlocal over_limit, recorded, results
        if recorded:
            return
        results += chunk
        over_limit = over_limit or len(results) > max_output
        while b"\n" in results and not recorded:
            line, _, rest = bytes(results).partition(b"\n")
            results = bytearray(rest)
            # only the first well-formed record of this child's own test goes on; it neither ends
            # nor extends the test's time (the child's exit does)
            if _call_record(line, tests[0], tokens[0]):
                recorded = True
                report("record", line=line.decode("utf-8", errors="replace"))

    test_deadline = min(deadline, started + test_seconds)
    ran_out, still_open = _follow(pid, {out_r: read_stdout, err_r: read_stderr, res_r: read_results},
                                  lambda: test_deadline, lambda: over_limit)
    _kill_all(pid, limits["pid_namespace"])
    _, status = os.waitpid(pid, 0)
    _reap(1.0 if limits["pid_namespace"] else 0.0)
    for fd in still_open:
        os.close(fd)
    outcome = {"tests": tests, "seconds": round(time.monotonic() - started, 4),
               "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
               "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
               "timeout": ran_out is not None and not over_limit, "output_limit": over_limit,
               "stdout": bytes(stdout[:max_output]).decode("utf-8", errors="replace"),
               "stderr": bytes(stderr).decode("utf-8", errors="replace")}
    return outcome, ran_out is not None and ran_out >= deadline


def watch_script(suite: dict, limits: dict, deadline: float) -> dict:
    """Run a script suite in a test process and a candidate process (see ``codec``); return the
    fields of its "script" event. Each test has its own limit, from the moment the one before it
    was recorded; only the test process's record of the test that is running ends it (the
    candidate holds no descriptor on which to write one)."""
    tests = list(range(len(suite["tests"])))
    test_seconds, max_output = limits["test_timeout"], limits["max_output_bytes"]
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    cpu_seconds = test_seconds * len(tests) + 1
    started = time.monotonic()
    tester = os.fork()
    if tester == 0:
        try:
            child_setup(null, null, null, (answer_r, request_w, res_w), cpu_seconds)
            run_tests(suite, tests, (3, 4), 5, max_output)
        finally:
            os._exit(4)
    try:
        candidate = _ZYGOTE[0].spawn(suite["program"], (request_r, answer_w, out_w, err_w), cpu_seconds, max_output)
    except (OSError, IndexError):
        candidate = -1  # the tests find no program to call: each fails; the sandbox is retired
        _ZYGOTE.clear()
    for fd in (request_r, request_w, answer_r, answer_w, out_w, err_w, res_w, null):
        os.close(fd)
    stderr, buffer = bytearray(), bytearray()
    results: dict[str, list] = {}
    running, test_started = 0, started
    over_limit = False

    def read_stderr(chunk: bytes) -> None:
        nonlocal stderr
        stderr = (stderr + chunk)[-STDERR_TAIL_BYTES:]

    def read_results(chunk: bytes) -> None:
        nonlocal buffer, over_limit, running, test_started
        buffer += chunk
        over_limit = len(buffer) > max_output
        while b"\n" in buffer and running < len(tests):
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer = bytearray(rest)
            record = _script_record(line, running)
            if record is not None:
                now = time.monotonic()
                results[str(running)] = [*record, round(now - test_started, 4)]
                running, test_started = running + 1, now

    ran_out, still_open = _follow(tester, {out_r: lambda chunk: None, err_r: read_stderr, res_r: read_results},
                                  lambda: min(deadline, test_started + test_seconds),
                                  lambda: running >= len(tests) or over_limit)
    if candidate > 0:
        _kill_all(candidate, limits["pid_namespace"])
    _kill_all(tester, limits["pid_namespace"])
    _, tester_status = os.waitpid(tester, 0)
    _reap(1.0 if limits["pid_namespace"] else 0.0)
    for fd in still_open:
        os.close(fd)
    finished = os.WIFEXITED(tester_status) and os.WEXITSTATUS(tester_status) == 0
    return {"tests": tests, "results": results, "running": running, "timeout": ran_out is not None,
            "finished": finished, "output_limit": over_limit, "seconds": round(time.monotonic() - started, 4),
            "stderr": bytes(stderr).decode("utf-8", errors="replace")}


def _script_record(line: bytes, running: int) -> tuple[str, str] | None:
    """(status, detail) of the test process's record for the running test; None for anything else."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if type(record) is not dict or type(record.get("test")) is not int or record["test"] != running:
        return None
    status, detail = record.get("status"), record.get("detail", "")
    if type(status) is not str or type(detail) is not str:
        return None
    return status, detail
