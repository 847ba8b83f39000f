"""The program that runs *inside* the code sandbox: it receives test suites, runs the candidate
program in child processes, and streams what happened back to the verifier. Standard library only;
it is started as a script (``python -I _harness.py``) and never imports primekit.

Trust boundary: this file is ours, the candidate program is not. Everything the candidate can
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
  the program, which runs in another, with plain values (see "script mode" below); the program's
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


class IsolationError(OSError):
    """A step of the sandbox's isolation failed: the sandbox must not run programs."""


def _check(result: int, step: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise IsolationError(error, f"cannot {step}: {os.strerror(error)}")
    return result


#: Per machine: the audit architecture and the numbers of add_key, request_key and keyctl.
_KEY_SYSCALLS = {"x86_64": (0xC000003E, (248, 249, 250)), "aarch64": (0xC00000B7, (217, 218, 219))}
KEYCTL_JOIN_SESSION_KEYRING = 1
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
MS_NOSUID, MS_NODEV = 2, 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def _key_filter(arch: int, numbers: tuple[int, ...]) -> bytes:
    """A seccomp BPF program: add_key, request_key and keyctl fail with EPERM, and so does every
    system call of another ABI (x32, or 32-bit calls on a 64-bit machine); the rest is allowed."""
    import struct

    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    program = [(load, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, deny), (load, 0, 0, 0),
               (jge, len(numbers) + 1, 0, 0x40000000)]
    for position, number in enumerate(numbers):  # jump to "deny", past the ones left and "allow"
        program.append((jeq, len(numbers) - position, 0, number))
    program += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


def _block_key_syscalls(libc) -> None:
    machine = os.uname().machine
    if machine not in _KEY_SYSCALLS:
        return  # no filter for this machine: the session keyring is still a fresh, empty one
    arch, numbers = _KEY_SYSCALLS[machine]
    code = _key_filter(arch, numbers)

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    program = Program(len(code) // 8, code)
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0),
           "block the key system calls (seccomp)")


def _isolate(libc, limits: dict) -> None:
    """Become an unprivileged user in user and mount namespaces of our own; every step must succeed
    where ``limits["strict"]`` (the bwrap backend), else each is applied as far as it goes.

    As root (bubblewrap started by root keeps CAP_SETUID so that this step can happen) the harness
    first becomes ``nobody``: the kernel never enforces the process limit on root. A fresh user
    namespace then gives the sandbox its own process count (one sandbox's fork bomb does not use up
    the limit of the others), its own per-user kernel limits and user keyrings; the mount
    namespace with it lets the harness mount the scratch folders as tmpfs with a size *and* an
    inode limit. The harness keeps the capabilities it holds in its own namespaces (to make a fresh
    IPC namespace for each program); its children drop them all before they run anything. Then:
    a fresh, empty session keyring (not the caller's), the key system calls blocked, no new
    privileges, not dumpable (no ptrace, no /proc/<pid>/fd or mem of the harness).
    """
    strict = bool(limits.get("strict"))

    def step(result: int, what: str) -> None:
        try:
            _check(result, what)
        except IsolationError:
            if strict:
                raise

    if os.getuid() == 0 or os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    uid, gid = os.geteuid(), os.getegid()
    mounts = limits.get("mounts") or []
    step(libc.unshare(CLONE_NEWUSER | (CLONE_NEWNS if mounts else 0)), "create user and mount namespaces")
    # a process that changed its user is not dumpable, and its /proc/self files belong to root:
    # dumpable for these three writes (nothing but this code runs yet), non-dumpable again below
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    except OSError as error:
        if strict:
            raise IsolationError(error.errno, f"cannot map the sandbox's user: {error.strerror}") from None
    for folder, mode, size, inodes in mounts:
        options = f"size={size},nr_inodes={inodes},mode={mode},uid={uid},gid={gid}".encode()
        _check(libc.mount(b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options),
               f"mount a tmpfs on {folder}")
    if limits.get("workdir"):
        os.chdir(limits["workdir"])
    step(_syscall_keyctl(libc, KEYCTL_JOIN_SESSION_KEYRING), "join a fresh session keyring")
    step(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
    step(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "make the harness non-dumpable")
    if strict:
        _block_key_syscalls(libc)
    if strict and limits["pid_namespace"] and os.getpid() != 1:
        raise IsolationError(0, "the harness is not the init of its pid namespace")
    if not limits["pid_namespace"]:
        _drop_capabilities(libc)  # no fresh IPC namespaces to make: nothing needs them


def _syscall_keyctl(libc, operation: int) -> int:
    machine = os.uname().machine
    if machine not in _KEY_SYSCALLS:
        return 0
    return libc.syscall(_KEY_SYSCALLS[machine][1][2], operation, None)


def _drop_capabilities(libc) -> None:
    """Drop every capability (effective, permitted, inheritable) of this process."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "drop capabilities")


def _fresh_ipc_namespace(libc) -> None:
    """A new IPC namespace for the next program: System V shared memory, message queues and
    semaphores and POSIX message queues of the programs before it are gone for it (and freed with
    the last process of theirs)."""
    _check(libc.unshare(CLONE_NEWIPC), "create an IPC namespace")


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
            _flush_stdio()
            exit_now(0)
        target = _call_target(namespace, fn_name, solution_class)
        if target is None:
            report(tests[0], tokens[0], missing=fn_name)
            _flush_stdio()
            exit_now(0)
        value = _json_value(target(*specs[0]["args"]))
        report(tests[0], tokens[0], value=value)
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


def _child_setup(stdin_fd: int, stdout_fd: int, stderr_fd: int, keep_fds: tuple[int, ...], cpu_seconds: float) -> None:
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
    _drop_capabilities(_libc())
    seconds = max(1, math.ceil(cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    _fresh_stdio()
    for number, action in ((signal.SIGPIPE, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler),
                           (signal.SIGTERM, signal.SIG_DFL), (signal.SIGCHLD, signal.SIG_DFL)):
        signal.signal(number, action)


# ------------------------------------------------------------------------------------------------
# script mode: the benchmark's test code and the candidate in two processes that exchange values
#
# The test process (forked from this clean harness, never touched by candidate code) runs the
# benchmark's trusted prelude and test snippets; every name the tests take from the candidate's
# module is a proxy (:class:`_Remote`) whose calls travel to the candidate process as encoded plain
# values and come back the same way. So the candidate cannot patch ``compile``/``exec``/``assert``
# of the tests, never holds the result channel, and every comparison the tests make is between
# values decoded here into built-in types (its ``__eq__`` never runs): an object that is not plain
# data comes back as an opaque reference, equal only to itself.

#: Classes of a trusted prelude passed by value (LeetCode's linked-list and tree nodes).
NODE_CLASSES = ("ListNode", "TreeNode")
_ITERATOR_TYPES = ("generator", "map", "filter", "zip", "enumerate", "reversed", "list_iterator",
                   "tuple_iterator", "range_iterator", "dict_keyiterator", "dict_valueiterator",
                   "dict_itemiterator", "set_iterator", "str_iterator", "itertools.chain")
_MAX_ITEMS = 1 << 20  # items drawn from an iterator a program returns


class _Codec:
    """Plain values <-> JSON-ready data: tuples, sets, dicts with any keys, bytes and non-finite
    floats tagged; LeetCode nodes by their attributes; anything else by reference (a number that
    means something only to the process that holds the object)."""

    def __init__(self, namespace: dict, make_reference, resolve_reference) -> None:
        self.namespace = namespace
        self.make_reference = make_reference
        self.resolve_reference = resolve_reference

    def encode(self, value):
        kind = type(value)
        if value is None or kind in (bool, str, int):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if kind is list:
            return [self.encode(item) for item in value]
        if kind in (tuple, set, frozenset):
            return {"$": kind.__name__, "v": [self.encode(item) for item in value]}
        if kind is dict:
            return {"$": "dict", "v": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if kind is bytes:
            return {"$": "bytes", "v": value.decode("latin-1")}
        if kind is complex:
            return {"$": "complex", "v": [self.encode(value.real), self.encode(value.imag)]}
        if kind is range:
            return {"$": "range", "v": [value.start, value.stop, value.step]}
        # subclasses of plain types (Counter, namedtuple, IntEnum, ...) travel as their plain
        # contents: whatever methods they redefine, the other side sees only values
        for plain in (bool, int, float, str, bytes, list, tuple, dict, set, frozenset):
            if isinstance(value, plain):
                return self.encode(plain(value) if plain is not dict else dict(value.items()))
        name = getattr(kind, "__name__", "")
        if name in NODE_CLASSES and self.namespace.get(name) is kind:
            return {"$": "node", "c": name, "v": {str(k): self.encode(v) for k, v in vars(value).items()}}
        if name in _ITERATOR_TYPES or getattr(kind, "__module__", "") + "." + name in _ITERATOR_TYPES:
            items = []
            for item in value:
                if len(items) >= _MAX_ITEMS:
                    raise MemoryError("an endless iterator")
                items.append(self.encode(item))
            return {"$": "iter", "v": items}
        if getattr(kind, "__module__", "") == "numpy" and hasattr(value, "tolist"):
            return self.encode(value.tolist())
        return {"$": "ref", "v": self.make_reference(value)}

    def decode(self, data):
        kind = type(data)
        if data is None or kind in (bool, str, int, float):
            return data
        if kind is list:
            return [self.decode(item) for item in data]
        if kind is not dict:
            raise ValueError("not an encoded value")
        tag, value = data.get("$"), data.get("v")
        if tag == "float" and value in ("nan", "inf", "-inf"):
            return float(value)
        if tag in ("tuple", "set", "frozenset", "iter") and type(value) is list:
            items = [self.decode(item) for item in value]
            return iter(items) if tag == "iter" else {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict" and type(value) is list:
            return {self.decode(pair[0]): self.decode(pair[1]) for pair in value if type(pair) is list and len(pair) == 2}
        if tag == "bytes" and type(value) is str:
            return value.encode("latin-1")
        if tag == "complex" and type(value) is list and len(value) == 2:
            return complex(float(value[0]), float(value[1]))
        if tag == "range" and type(value) is list and len(value) == 3 and all(type(v) is int for v in value):
            return range(*value)
        if tag == "node" and data.get("c") in NODE_CLASSES and type(value) is dict:
            node_class = self.namespace.get(data["c"])
            if not isinstance(node_class, type):
                raise ValueError(f"no class {data['c']}")
            node = node_class.__new__(node_class)
            for key, item in value.items():
                if type(key) is str and key.isidentifier():
                    setattr(node, key, self.decode(item))
            return node
        if tag == "ref" and type(value) is int:
            return self.resolve_reference(value)
        raise ValueError("not an encoded value")


class _LineChannel:
    """JSON lines over a pair of pipes, each line read with a size bound."""

    def __init__(self, read_fd: int, write_fd: int, max_bytes: int) -> None:
        self.read_fd, self.write_fd, self.max_bytes = read_fd, write_fd, max_bytes
        self.buffer = b""

    def send(self, message) -> None:
        view = memoryview((json.dumps(message) + "\n").encode())
        while view:
            view = view[os.write(self.write_fd, view):]

    def receive(self):
        while b"\n" not in self.buffer:
            if len(self.buffer) > self.max_bytes:
                raise ValueError("a message longer than the output limit")
            chunk = os.read(self.read_fd, READ_CHUNK)
            if not chunk:
                raise _CandidateGone("the program ended before this test finished")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > self.max_bytes:
            raise ValueError("a message longer than the output limit")
        return json.loads(line)


class _CandidateGone(Exception):
    """The candidate process closed its end (it exited, or was killed)."""


class _RemoteError(Exception):
    """The candidate's code raised an exception that is not a built-in one."""


class _Remote:
    """A function, class or object of the candidate's process. Calls and attribute reads are sent
    there; equality is identity (the candidate's ``__eq__`` never runs here)."""

    __slots__ = ("_proxy_link", "_proxy_ref")

    def __init__(self, link, ref: int) -> None:
        object.__setattr__(self, "_proxy_link", link)
        object.__setattr__(self, "_proxy_ref", ref)

    def __call__(self, *args, **kwargs):
        return self._proxy_link.request({"op": "call", "ref": self._proxy_ref, "args": list(args), "kwargs": kwargs})

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._proxy_link.request({"op": "getattr", "ref": self._proxy_ref, "name": name})

    def __setattr__(self, name, value) -> None:
        raise AttributeError("objects of the program are read-only to the tests")

    def __repr__(self) -> str:
        return f"<object of the program #{self._proxy_ref}>"


class _Link:
    """The test process's end of the value channel to the candidate process."""

    def __init__(self, channel: _LineChannel, namespace: dict) -> None:
        self.channel = channel
        self.sequence = 0
        self.remotes: dict[int, _Remote] = {}
        self.codec = _Codec(namespace, self._reference_of, self._remote)

    def _remote(self, ref: int) -> _Remote:
        if ref not in self.remotes:
            self.remotes[ref] = _Remote(self, ref)
        return self.remotes[ref]

    @staticmethod
    def _reference_of(value) -> int:
        if type(value) is _Remote:
            return object.__getattribute__(value, "_proxy_ref")
        raise TypeError(f"a {type(value).__name__} cannot be passed to the program (plain data only)")

    def request(self, message: dict):
        self.sequence += 1
        message["n"] = self.sequence
        for key in ("args", "kwargs"):
            if key in message:
                message[key] = self.codec.encode(message[key])
        self.channel.send(message)
        answer = self.channel.receive()
        if type(answer) is not dict or answer.get("n") != self.sequence:
            raise ValueError("a garbled answer from the program")
        if "ok" in answer:
            return self.codec.decode(answer["ok"])
        raised = answer.get("raise")
        name, text = (str(raised[0]), str(raised[1])) if type(raised) is list and len(raised) == 2 else ("?", "")
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin.__module__ == "builtins":
            try:
                error = builtin(text)
            except Exception:
                error = _RemoteError(f"{name}: {text}")
        else:
            error = _RemoteError(f"{name}: {text}")
        raise error


def _names_read(sources: list[str]) -> set[str]:
    """Every name the test snippets read (at any depth: ``check``'s body reads ``candidate``)."""
    import ast

    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        names.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))
    return names


def _run_tests(suite: dict, tests: list[int], link_fds: tuple[int, int], result_fd: int, max_bytes: int) -> None:
    """Body of the test process (trusted code only); never returns. Writes one record per test:
    ``{"test": i, "status": ..., "detail": ...}``."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    link = _Link(_LineChannel(link_fds[0], link_fds[1], max_bytes), namespace)
    codes = [suite["tests"][i]["code"] for i in tests]

    def record(index: int, status: str, detail: str = "") -> None:
        line = json.dumps({"test": index, "status": status, "detail": detail[:2000]}) + "\n"
        view = memoryview(line.encode())
        while view:
            view = view[os.write(result_fd, view):]

    try:
        ready = link.channel.receive()
        exec(compile(suite.get("prelude") or "", "prelude.py", "exec"), namespace)
    except BaseException as error:
        detail = str(error) if isinstance(error, _CandidateGone) else f"{type(error).__name__}: {error}"
        for index in tests:
            record(index, "exited_early" if isinstance(error, _CandidateGone) else "error", detail)
        os._exit(0)
    if type(ready) is not dict or "error" in ready or type(ready.get("names")) is not dict:
        detail = str(ready.get("error", "")) if type(ready) is dict else "a garbled start"
        for index in tests:
            record(index, "error", detail or "the program failed")
        os._exit(0)
    targets = set(suite.get("targets") or ())
    offered = {name: ref for name, ref in ready["names"].items() if type(name) is str and type(ref) is int}
    for name in _names_read(codes):
        if name in targets or (name not in namespace and not hasattr(builtins, name) and name in offered):
            namespace.pop(name, None)
            if name in offered:
                namespace[name] = link.codec.decode({"$": "ref", "v": offered[name]})
    stop_on_failure = bool(suite.get("stop_on_failure"))
    for index, code in zip(tests, codes):
        try:
            exec(compile(code, f"test_{index}.py", "exec"), namespace)
            status, detail = "passed", ""
        except AssertionError as error:
            status, detail = "wrong_answer", f"a test assertion failed{': ' + str(error) if str(error) else ''}"
        except _CandidateGone as error:
            status, detail = "exited_early", str(error)
        except BaseException as error:
            status, detail = "error", f"{type(error).__name__}: {error}"
        record(index, status, detail)
        if stop_on_failure and status != "passed":
            break
    os._exit(0)


def _serve_candidate(code, link_fds: tuple[int, int], max_bytes: int) -> None:
    """Body of the candidate process: run the program as a module, then answer the test process's
    requests (read a module name, call, read an attribute) until it closes; never returns."""
    channel = _LineChannel(link_fds[0], link_fds[1], max_bytes)
    send, exit_now = channel.send, os._exit
    namespace = {"__name__": "solution", "__builtins__": builtins, "__file__": "solution.py"}
    objects: list = []
    numbers: dict[int, int] = {}

    def reference(value) -> int:
        if id(value) not in numbers:
            numbers[id(value)] = len(objects)
            objects.append(value)
        return numbers[id(value)]

    codec = _Codec(namespace, reference, lambda ref: objects[ref])
    try:
        exec(code, namespace)
        send({"names": {name: reference(value) for name, value in namespace.items() if type(name) is str
                        and not name.startswith("__")}})
    except BaseException as error:
        _flush_stdio()
        try:
            send({"error": f"the program raised {type(error).__name__}: {error}"[:2000]})
        except BaseException:
            pass
        exit_now(1)
    while True:
        try:
            message = channel.receive()
        except BaseException:
            _flush_stdio()
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
            _flush_stdio()
            exit_now(1)


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
            _child_setup(stdin_fd, out_w, err_w, (res_w,), test_seconds * len(tests) + 1)
            _run_child(suite, tests, tokens, code, 3)
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
    child_done = timed_out = over_limit = program_time_out = recorded = False
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
            elif not recorded:
                results += chunk
                over_limit = over_limit or len(results) > max_output
                while b"\n" in results and not recorded:
                    line, _, rest = bytes(results).partition(b"\n")
                    results = bytearray(rest)
                    # only the first well-formed record of this child's own test goes on; it
                    # neither ends nor extends the test's time (the child's exit does)
                    if _call_record(line, tests[0], tokens[0]):
                        recorded = True
                        report("record", line=line.decode("utf-8", errors="replace"))
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


class _Zygote:
    """A process forked from the harness before it has read any suite, from which every candidate
    process of an assert-based suite is forked: the candidate's memory never held any test code
    (not in a reachable object, not in freed memory), of this program or of the ones before.

    The harness sends it, over a socketpair, the program's source (in a memfd) and the candidate's
    pipes (as descriptors); it makes a fresh IPC namespace, forks the candidate and answers with its
    pid. It ignores SIGCHLD, so the kernel reaps its children. A program that kills or stops it
    makes the next spawn fail, which retires the sandbox."""

    def __init__(self, fresh_ipc: bool) -> None:
        import socket

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                parent.close()
                _zygote_main(child, fresh_ipc)
            finally:
                os._exit(4)
        child.close()
        self.socket = parent
        _KEEP.add(self.pid)

    def spawn(self, source: str, fds: tuple[int, ...], cpu_seconds: float, max_output: int) -> int:
        """Fork a candidate process serving ``source`` on ``fds`` (request in, answers out, stdout,
        stderr); its pid. Raises OSError if the zygote does not answer at once."""
        import socket

        program = os.memfd_create("program")
        try:
            data = memoryview(source.encode("utf-8", errors="surrogatepass"))
            while data:
                data = data[os.write(program, data):]
            os.kill(self.pid, signal.SIGCONT)  # a program may have stopped it
            message = json.dumps({"cpu_seconds": cpu_seconds, "max_output": max_output}).encode()
            socket.send_fds(self.socket, [message], [program, *fds])
        finally:
            os.close(program)
        poller = select.poll()
        poller.register(self.socket.fileno(), select.POLLIN)
        if not poller.poll(5000):
            raise OSError("the zygote did not answer")
        answer = self.socket.recv(64)
        if not answer.isdigit() or int(answer) <= 0:
            raise OSError("the zygote could not start the program")
        return int(answer)


def _zygote_main(connection, fresh_ipc: bool) -> None:
    """Body of the zygote; never returns."""
    import socket

    libc = _libc()
    keep = connection.fileno()
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    null = 0
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(connection, 4096, 8)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        pid = 0
        try:
            request = json.loads(message)
            if len(fds) != 5:
                raise OSError("descriptors missing")
            if fresh_ipc:
                _fresh_ipc_namespace(libc)
            pid = os.fork()
            if pid == 0:
                try:
                    size = os.fstat(fds[0]).st_size
                    source = os.pread(fds[0], size, 0).decode("utf-8", errors="surrogatepass")
                    os.close(fds[0])
                    _child_setup(null, fds[3], fds[4], (fds[1], fds[2]), request["cpu_seconds"])
                    _serve_candidate(compile(source, "solution.py", "exec"), (3, 4), request["max_output"])
                finally:
                    os._exit(4)
        except BaseException:
            pid = 0
        for fd in fds:
            os.close(fd)
        try:
            connection.send(str(pid).encode())
        except OSError:
            os._exit(0)


_ZYGOTE: list[_Zygote] = []


def _watch_script(suite: dict, limits: dict, deadline: float) -> tuple[dict, bool]:
    """Run a script suite in a test process and a candidate process (see "script mode" above); return
    the fields of its "script" event and whether the program's time ran out. Each test has its own
    limit, from the moment the one before it was recorded; only the test process's record of the
    test that is running ends it (the candidate holds no descriptor on which to write one)."""
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
            _child_setup(null, null, null, (answer_r, request_w, res_w), cpu_seconds)
            _run_tests(suite, tests, (3, 4), 5, max_output)
        finally:
            os._exit(4)
    try:
        candidate = _ZYGOTE[0].spawn(suite["program"], (request_r, answer_w, out_w, err_w), cpu_seconds, max_output)
    except (OSError, IndexError):
        candidate = -1  # the tests find no program to call: each fails; the sandbox is retired
        _ZYGOTE.clear()
    for fd in (request_r, request_w, answer_r, answer_w, out_w, err_w, res_w, null):
        os.close(fd)
    open_fds = {out_r: "stdout", err_r: "stderr", res_r: "results"}
    exited = os.pidfd_open(tester)
    poller = select.poll()
    for fd in (*open_fds, exited):
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    stderr, buffer = bytearray(), bytearray()
    results: dict[str, list] = {}
    running, test_started = 0, started
    tester_done = timed_out = over_limit = False
    while open_fds and running < len(tests) and not over_limit:
        now = time.monotonic()
        test_deadline = min(deadline, test_started + test_seconds)
        if tester_done:
            wait_ms = 0
        elif now >= test_deadline:
            timed_out = True
            break
        else:
            wait_ms = max(1, int((test_deadline - now) * 1000))
        events = poller.poll(wait_ms)
        if tester_done and not events:
            break
        for fd, _ in events:
            if fd == exited:
                tester_done = True
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
            if open_fds[fd] == "stderr":
                stderr = (stderr + chunk)[-STDERR_TAIL_BYTES:]
            elif open_fds[fd] == "results":
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
    if candidate > 0:
        _kill_all(candidate, limits["pid_namespace"])
    _kill_all(tester, limits["pid_namespace"])
    _, tester_status = os.waitpid(tester, 0)
    _reap(1.0 if limits["pid_namespace"] else 0.0)
    for fd in (*open_fds, exited):
        os.close(fd)
    finished = os.WIFEXITED(tester_status) and os.WEXITSTATUS(tester_status) == 0
    outcome = {"tests": tests, "results": results, "running": running, "timeout": timed_out, "finished": finished,
               "output_limit": over_limit, "seconds": round(time.monotonic() - started, 4),
               "stderr": bytes(stderr).decode("utf-8", errors="replace")}
    return outcome, timed_out and time.monotonic() >= deadline


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


def _run_suite(suite: dict, limits: dict, report: _Reporter, verifier: _Input) -> None:
    started = time.monotonic()
    try:
        code = compile(suite["program"], "solution.py", "exec")
    except BaseException as error:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
        report("compile_error", message=f"{type(error).__name__}: {error}"[:2000])
        return
    deadline = started + limits["program_timeout"]
    if suite["mode"] == "script":
        outcome, _ = _watch_script(suite, limits, deadline)
        report("script", **outcome)
        return
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
    libc = _libc()
    first = _first_line()
    if not first:
        return
    limits = json.loads(first)["limits"]  # before any suite: the zygote is forked from a harness that saw none
    try:
        _isolate(libc, limits)
    except OSError as error:
        report("fatal", message=str(error)[:300])
        sys.exit(1)
    _set_limits(limits)
    for name in WARM_MODULES:
        __import__(name)
    _ZYGOTE.append(_Zygote(fresh_ipc=limits["pid_namespace"]))
    stdin = _Input()
    while (suite := _next_suite(stdin)) is not None:
        if limits["pid_namespace"]:
            try:
                _fresh_ipc_namespace(libc)
            except OSError as error:
                report("fatal", message=str(error)[:300])
                sys.exit(1)
        _run_suite(suite, limits, report, stdin)
        suite.clear()
        clean = all([_remove_contents(folder) for folder in limits["scratch"]]) and bool(_ZYGOTE)
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
    limits, libc = json.loads(limits_json), _libc()
    try:
        _isolate(libc, limits)
        _set_limits(limits)
        if limits["pid_namespace"]:
            _fresh_ipc_namespace(libc)
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
