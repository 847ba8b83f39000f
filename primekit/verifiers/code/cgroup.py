"""A memory and process bound for one sandbox: a control group of its own.

Per-process rlimits do not bound what a sandbox takes from the machine: System V shared memory,
memfds, files in its tmpfs folders and the kernel's objects (inodes, pipes) belong to no process's
address space. A memory control group does count all of them, for every process of the sandbox
together, and the kernel reclaims or kills inside the group when it is full.

Each sandbox gets a fresh group, a child of the verifier's own: with cgroup v2 (the unified
hierarchy, ``memory.max``, ``memory.swap.max``, ``pids.max``) when the verifier's group delegates
the memory and pids controllers to its children, else with cgroup v1 (the ``memory`` hierarchy,
``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes``, and the ``pids`` hierarchy when
mounted). The sandbox's first process joins the group before it starts anything (a shell that
writes its own pid, then ``exec``s the sandbox), so nothing it starts is ever outside it; the group
is removed when the sandbox has ended.

Where no writable memory controller exists (no root and no delegation, or a container without
one), :func:`cgroup_problem` says why; the sandbox then refuses to start unless the caller opts
into the weaker per-process bound (``memory_bound="rlimit"``).
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from pathlib import Path

__all__ = ["SandboxCgroup", "cgroup_problem", "CGROUP_ROOT"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
_NAMES = itertools.count()


def _own_paths() -> dict[str, str]:
    """Controller ("" for v2) -> this process's group path, from /proc/self/cgroup."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _mounts() -> dict[str, Path]:
    """Controller ("" for the v2 hierarchy) -> where its hierarchy is mounted."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        kind, options, mount_point = fields[separator + 1], fields[separator + 3], Path(fields[4])
        if kind == "cgroup2":
            found.setdefault("", mount_point)
        elif kind == "cgroup":
            for option in options.split(","):
                if option in ("memory", "pids"):
                    found.setdefault(option, mount_point)
    return found


def _folders() -> tuple[str, dict[str, Path]]:
    """("v2" or "v1", controller -> the folder under which a sandbox's group is made); raises
    OSError saying why neither version offers a writable memory controller."""
    own, mounts = _own_paths(), _mounts()
    if "" in mounts and "" in own:
        parent = mounts[""] / own[""].lstrip("/")
        delegated = (parent / "cgroup.subtree_control").read_text().split() if (
            parent / "cgroup.subtree_control").exists() else []
        if "memory" in delegated and os.access(parent, os.W_OK):
            return "v2", {"": parent}
    if "memory" in mounts and "memory" in own:
        parent = mounts["memory"] / own["memory"].lstrip("/")
        if not os.access(parent, os.W_OK):
            raise OSError(f"the memory cgroup {parent} is not writable (run as root or delegate it)")
        folders = {"memory": parent}
        if "pids" in mounts and "pids" in own:
            pids = mounts["pids"] / own["pids"].lstrip("/")
            if os.access(pids, os.W_OK):
                folders["pids"] = pids
        return "v1", folders
    raise OSError("no writable memory cgroup: cgroup v2 without the memory controller delegated to this "
                  "process's group, and no cgroup v1 memory hierarchy")


class SandboxCgroup:
    """The group of one sandbox: made with its limits, joined by the sandbox's first process
    (:meth:`join_command`), removed by :meth:`remove` once every process in it has ended."""

    def __init__(self, memory_bytes: int, max_processes: int) -> None:
        self.version, parents = _folders()
        name = f"primekit-sandbox-{os.getpid()}-{next(_NAMES)}"
        self.folders = [parent / name for parent in parents.values()]
        try:
            for folder in self.folders:
                folder.mkdir()
            if self.version == "v2":
                folder = self.folders[0]
                self._write(folder / "memory.max", memory_bytes)
                self._write(folder / "memory.swap.max", 0, optional=True)
                self._write(folder / "pids.max", max_processes, optional=True)
            else:
                memory = self.folders[0]
                self._write(memory / "memory.limit_in_bytes", memory_bytes)
                self._write(memory / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
                for folder in self.folders[1:]:
                    self._write(folder / "pids.max", max_processes)
        except OSError:
            self.remove()
            raise
        self.memory_bytes = memory_bytes

    @staticmethod
    def _write(path: Path, value: int, optional: bool = False) -> None:
        if optional and not path.exists():
            return
        path.write_text(str(value))

    def join_command(self, command: list[str]) -> list[str]:
        """``command`` run by a shell that first moves itself into the group (``echo 0`` writes the
        writer's own pid), then becomes the command: nothing of it runs outside the group."""
        joins = " && ".join(f"echo 0 > '{folder}/cgroup.procs'" for folder in self.folders)
        # where allowed (root), the sandbox's own processes are the last the group's OOM killer picks;
        # the harness raises its children's score to the top again
        protect = "{ echo -1000 > /proc/self/oom_score_adj; } 2>/dev/null"
        return ["/bin/sh", "-c", f'{joins} && {protect}; exec "$@"', "sh", *command]

    def pids(self) -> list[int]:
        """The processes in the group now (whoever their parent is)."""
        try:
            return [int(pid) for pid in (self.folders[0] / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def peak_bytes(self) -> int:
        """The most memory the group has held at once (bytes)."""
        folder = self.folders[0]
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        return int((folder / name).read_text())

    def remove(self) -> None:
        """Remove the group (its processes are gone or going: retried for up to a second)."""
        deadline = time.monotonic() + 1.0
        for folder in self.folders:
            while folder.exists():
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)


@functools.lru_cache(maxsize=1)
def cgroup_problem() -> str | None:
    """Why a sandbox cannot get a memory cgroup here (None if it can): a real group made and removed."""
    try:
        SandboxCgroup(64 << 20, 8).remove()
    except OSError as error:
        return str(error)
    return None
