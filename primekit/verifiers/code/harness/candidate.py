"""The processes that run candidate code, and how each is set up before it runs any: its own
process group, stdio on the test's pipes, every descriptor but its own closed (the report channel
included), no capabilities, a CPU limit.

* a stdin/stdout or call child (:func:`run_child`) runs the program and, for a call test, writes
  one record of its test with that test's secret token on its result pipe, only after the test
  code *returned*;
* the candidate process of an assert-based suite (:func:`serve_candidate`, forked from the zygote)
  runs the program as a module and answers the test process's requests with plain values.
"""

from __future__ import annotations

import builtins
import gc
import io
import json
import math
import os
import resource
import signal
import sys
import traceback

from codec import Codec, LineChannel
from isolation import drop_capabilities, load_libc


def _fresh_stdio() -> None:
    """New Python stdio objects on fds 0-2 (the inherited ones may hold the harness's buffers)."""
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8",
                                 errors="replace")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                  errors="replace")
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8",
                                  errors="replace", line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def flush_stdio() -> None:
    """Flush the candidate's stdout and stderr, whatever state it left them in."""
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


def run_child(suite: dict, tests: list[int], tokens: list[str], code, result_fd: int) -> None:
    """Body of a child of a stdin/stdout or call test; never returns."""
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
            flush_stdio()
            exit_now(0)
        target = _call_target(namespace, fn_name, solution_class)
        if target is None:
            report(tests[0], tokens[0], missing=fn_name)
            flush_stdio()
            exit_now(0)
        value = _json_value(target(*specs[0]["args"]))
        report(tests[0], tokens[0], value=value)
        flush_stdio()
        exit_now(0)
    except SystemExit as stop:
        flush_stdio()
        if mode == "stdio":
            exit_now(0 if stop.code in (None, 0) else 1)
        sys.stderr.write(f"SystemExit({stop.code!r}) before the test finished\n")
        flush_stdio()
        exit_now(3)
    except BaseException:
        try:
            traceback.print_exc(limit=5)
        except BaseException:
            pass
        flush_stdio()
        exit_now(1)


def _call_target(namespace: dict, fn_name: str, solution_class: bool):
    """``Solution().fn_name`` when the program defines a ``Solution`` class (LeetCode style),
    else the module-level function ``fn_name``; None when neither exists."""
    if solution_class and isinstance(namespace.get("Solution"), type):
        target = getattr(namespace["Solution"](), fn_name, None)
    else:
        target = namespace.get(fn_name)
    return target if callable(target) else None


def child_setup(stdin_fd: int, stdout_fd: int, stderr_fd: int, keep_fds: tuple[int, ...], cpu_seconds: float) -> None:
    """In a child, before it runs anything else: own process group, first to die when memory runs
    out, stdio on the test's pipes, ``keep_fds`` moved to 3, 4, ... and every other descriptor
    closed (the report channel included), a CPU limit."""
    os.setpgid(0, 0)
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    os.dup2(stdin_fd, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    moved = [os.dup(fd) for fd in keep_fds]  # above any fd they are about to be moved to
    for target, fd in enumerate(moved, start=3):
        os.dup2(fd, target)
    os.closerange(3 + len(keep_fds), 1 << 16)
    drop_capabilities(load_libc())
    seconds = max(1, math.ceil(cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    _fresh_stdio()
    for number, action in ((signal.SIGPIPE, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler),
                           (signal.SIGTERM, signal.SIG_DFL), (signal.SIGCHLD, signal.SIG_DFL)):
        signal.signal(number, action)


def serve_candidate(code, link_fds: tuple[int, int], max_bytes: int) -> None:
    """Body of the candidate process: run the program as a module, then answer the test process's
    requests (read a module name, call, read an attribute) until it closes; never returns."""
    channel = LineChannel(link_fds[0], link_fds[1], max_bytes)
    send, exit_now = channel.send, os._exit
    namespace = {"__name__": "solution", "__builtins__": builtins, "__file__": "solution.py"}
    objects: list = []
    numbers: dict[int, int] = {}

    def reference(value) -> int:
        if id(value) not in numbers:
            numbers[id(value)] = len(objects)
            objects.append(value)
        return numbers[id(value)]

    codec = Codec(namespace, reference, lambda ref: objects[ref])
    try:
        exec(code, namespace)
        send({"names": {name: reference(value) for name, value in namespace.items() if type(name) is str
                        and not name.startswith("__")}})
    except BaseException as error:
        flush_stdio()
        try:
            send({"error": f"the program raised {type(error).__name__}: {error}"[:2000]})
        except BaseException:
            pass
        exit_now(1)
    while True:
        try:
            message = channel.receive()
        except BaseException:
            flush_stdio()
            exit_now(0)
        number = message.get("n") if type(message) is dict else None
        try:
            target = objects[message["ref"]]
            if message["op"] == "getattr":
                value = getattr(target, message["name"])
            else:
                value = target(*codec.decode(message["args"]), **codec.decode(message["kwargs"]))
            answer = {"n": number, "ok": codec.encode(value)}
        except BaseException as error:
            answer = {"n": number, "raise": [type(error).__name__, str(error)[:1000]]}
        try:
            send(answer)
        except BaseException:
            flush_stdio()
            exit_now(1)
