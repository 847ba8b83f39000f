"""Isolation of the sandbox (harness side, before any candidate code exists in this process):
an unprivileged user in user and mount namespaces of its own, size- and inode-bounded scratch
mounts, a fresh session keyring with the key system calls blocked (seccomp), no new privileges,
not dumpable, and the rlimits every process of the sandbox inherits."""

from __future__ import annotations

import ctypes
import os
import resource
import struct

NOBODY = 65534
CLONE_NEWUSER = 0x10000000
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
KEYCTL_JOIN_SESSION_KEYRING = 1
MS_NOSUID, MS_NODEV = 2, 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
#: Per machine: the audit architecture and the numbers of add_key, request_key and keyctl.
_KEY_SYSCALLS = {"x86_64": (0xC000003E, (248, 249, 250)), "aarch64": (0xC00000B7, (217, 218, 219))}


def load_libc():
    """The C library, with errno kept for :func:`_check`."""
    return ctypes.CDLL(None, use_errno=True)


class IsolationError(OSError):
    """A step of the sandbox's isolation failed: the sandbox must not run programs."""


def _check(result: int, step: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise IsolationError(error, f"cannot {step}: {os.strerror(error)}")
    return result


def _key_filter(arch: int, numbers: tuple[int, ...]) -> bytes:
    """A seccomp BPF program: add_key, request_key and keyctl fail with EPERM, and so does every
    system call of another ABI (x32, or 32-bit calls on a 64-bit machine); the rest is allowed."""
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


def isolate(libc, limits: dict) -> None:
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
        drop_capabilities(libc)  # no fresh IPC namespaces to make: nothing needs them


def _syscall_keyctl(libc, operation: int) -> int:
    machine = os.uname().machine
    if machine not in _KEY_SYSCALLS:
        return 0
    return libc.syscall(_KEY_SYSCALLS[machine][1][2], operation, None)


def drop_capabilities(libc) -> None:
    """Drop every capability (effective, permitted, inheritable) of this process."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "drop capabilities")


def fresh_ipc_namespace(libc) -> None:
    """A new IPC namespace for the next program: System V shared memory, message queues and
    semaphores and POSIX message queues of the programs before it are gone for it (and freed with
    the last process of theirs)."""
    _check(libc.unshare(CLONE_NEWIPC), "create an IPC namespace")


def set_limits(limits: dict) -> None:
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
