"""What a sandbox takes from the machine stays within its stated bound, and nothing of the
machine's or of one program's reaches another: memory (processes, System V shared memory, memfds,
tmpfs files and inodes) within ``memory_mb``; IPC objects gone for the next program; a fresh, empty
session keyring with the key system calls blocked; pid 1 ignores SIGINT/SIGTERM; retired sandboxes
leave no zombie; a failed isolation step is a one-line refusal."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time

import pytest

from primekit.verifiers.code import CodeVerifier, SandboxSettings, SandboxUnavailable, TestSuite, check_sandbox
from primekit.verifiers.code import sandbox as sandbox_module
from primekit.verifiers.code.cgroup import cgroup_problem

MEMORY_MB = 256
LIMITS = dict(test_timeout=2.0, program_timeout=8.0, memory_mb=MEMORY_MB, stack_mb=64, max_processes=8,
              disk_mb=64, disk_files=512)
#: Memory the machine may lose beyond the bound while a program runs: the sandbox's own bwrap and
#: page tables outside the group, and what other processes of this machine do meanwhile.
HOST_SLACK_MB = 192


@pytest.fixture(scope="module")
def settings() -> SandboxSettings:
    settings = SandboxSettings(backend="bwrap", **LIMITS)
    try:
        check_sandbox(settings)
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    return settings


def _stdio(program: str, expected: str = "") -> TestSuite:
    return TestSuite("stdio", program, ({"input": ""},), (expected,))


def _available_mb() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


#: Each grabs memory no per-process limit sees, for as long as its test lasts.
HOGS = {
    "System V shared memory, attached and detached": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
        "while True:\n    shm = libc.shmget(0, 64 << 20, 0o1600)\n    if shm < 0:\n        continue\n"
        "    address = libc.shmat(shm, None, 0)\n    if address in (None, ctypes.c_void_p(-1).value):\n        continue\n"
        "    ctypes.memset(address, 1, 64 << 20)\n    libc.shmdt(ctypes.c_void_p(address))\n"),
    "memfds": (
        "import os, mmap\nkeep = []\nwhile True:\n    try:\n        fd = os.memfd_create('x')\n"
        "        os.ftruncate(fd, 32 << 20)\n        with mmap.mmap(fd, 32 << 20) as view:\n"
        "            view.write(b'x' * (32 << 20))\n        keep.append(fd)\n    except OSError:\n"
        "        if keep:\n            os.close(keep.pop(0))\n"),
    "empty files in the tmpfs folders": (
        "import os\ni = 0\nwhile True:\n    for folder in ('.', '/tmp', '/dev/shm'):\n        try:\n"
        "            os.close(os.open(f'{folder}/f{i}', os.O_CREAT | os.O_WRONLY))\n        except OSError:\n"
        "            pass\n    i += 1\n"),
    "many processes allocating": (
        "import os\nfor _ in range(6):\n    if os.fork() == 0:\n        break\nblocks = []\nwhile True:\n"
        "    try:\n        blocks.append(b'x' * (16 << 20))\n    except MemoryError:\n        pass\n"),
}


def test_the_machine_has_a_memory_cgroup_or_the_sandbox_refuses():
    """The default bound needs a memory cgroup; without one the sandbox refuses in one line (and
    the weaker per-process bound is an explicit choice)."""
    problem = cgroup_problem()
    if problem is None:
        assert check_sandbox(SandboxSettings(backend="bwrap")) == "bwrap"
    else:
        with pytest.raises(SandboxUnavailable) as caught:
            check_sandbox(SandboxSettings(backend="bwrap"))
        assert "\n" not in str(caught.value) and "PRIMEKIT_CODE_SANDBOX_MEMORY=rlimit" in str(caught.value)


@pytest.mark.parametrize("name", list(HOGS))
def test_memory_beyond_any_process_stays_within_the_sandbox_bound(name, settings):
    if cgroup_problem() is not None:
        pytest.skip(cgroup_problem())
    sandbox = sandbox_module.Sandbox(settings)
    lowest, stop = [_available_mb()], threading.Event()
    before = lowest[0]

    def watch() -> None:
        while not stop.is_set():
            lowest[0] = min(lowest[0], _available_mb())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        verdict = sandbox.run(_stdio(HOGS[name], "never"))
        peak = sandbox.cgroup.peak_bytes()
    finally:
        stop.set()
        watcher.join()
        sandbox.close()
    assert not verdict.passed
    assert peak <= MEMORY_MB << 20, (name, peak >> 20)
    assert before - lowest[0] < MEMORY_MB + HOST_SLACK_MB, (name, before - lowest[0])


def test_each_tmpfs_has_an_inode_limit(settings):
    program = ("import os\ncounts = []\nfor folder in ('.', '/tmp', '/dev/shm'):\n    n = 0\n    try:\n"
               "        while True:\n            os.close(os.open(f'{folder}/f{n}', os.O_CREAT | os.O_WRONLY))\n"
               "            n += 1\n    except OSError:\n        pass\n    counts.append(n)\nprint(counts)\n")
    verdict = sandbox_module.run_suite(_stdio(program), settings)
    counts = eval(verdict.tests[0].detail.split("printed '")[1].split("\\n")[0])
    assert all(0 < count < settings.disk_files for count in counts), verdict.tests[0].detail


IPC_LEAVE = (
    "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "assert libc.shmget(1234, 4096, 0o1666) >= 0\nassert libc.msgget(1234, 0o1666) >= 0\n"
    "assert libc.semget(1234, 1, 0o1666) >= 0\n"
    "assert libc.mq_open(b'/primekit', os.O_CREAT | os.O_RDWR, 0o666, None) >= 0\nprint('left')\n")
IPC_LOOK = (
    "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nfound = []\n"
    "for kind in ('shm', 'msg', 'sem'):\n    found += open(f'/proc/sysvipc/{kind}').read().splitlines()[1:]\n"
    "found += ['shm'] if libc.shmget(1234, 0, 0) >= 0 else []\nfound += ['msg'] if libc.msgget(1234, 0) >= 0 else []\n"
    "found += ['sem'] if libc.semget(1234, 0, 0) >= 0 else []\n"
    "found += ['mq'] if libc.mq_open(b'/primekit', os.O_RDWR) >= 0 else []\nprint(found or 'none')\n")


def test_ipc_objects_of_a_program_are_gone_for_the_next(settings):
    with CodeVerifier(settings, workers=1) as verifier:
        for _ in range(2):
            assert verifier.verify(_stdio(IPC_LEAVE, "left")).passed
            verdict = verifier.verify(_stdio(IPC_LOOK, "none"))
            assert verdict.passed, verdict
        assert len(verifier._idle) == 1 and verifier._idle[0].programs == 4  # the same sandbox throughout


def test_the_session_keyring_is_fresh_and_the_key_calls_are_blocked(settings):
    """A key the caller adds to its session keyring is not there, and the program can neither add
    keys nor read any keyring."""
    keyctl = subprocess.run(["python3", "-c", "import ctypes; print(ctypes.CDLL(None).syscall(248, b'user', "
                                              "b'primekit-test-key', b'secret-9f2e', 9, -3))"],
                            capture_output=True, text=True)
    program = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "calls = [libc.syscall(248, b'user', b'k', b'v', 1, -3), libc.syscall(250, 0, -3, 0),\n"
               "         libc.syscall(249, b'user', b'primekit-test-key', None, 0)]\n"
               "keys = open('/proc/keys').read() if os.path.exists('/proc/keys') else ''\n"
               "print(calls, ctypes.get_errno(), 'primekit-test-key' in keys, 'secret' in keys)\n")
    verdict = sandbox_module.run_suite(_stdio(program, "[-1, -1, -1] 1 False False"), settings)
    assert verdict.passed, (verdict, keyctl.stdout, keyctl.stderr)


def test_pid_1_ignores_sigint_and_sigterm(settings):
    program = ("import os, signal\nfor number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
               "    try:\n        os.kill(1, number)\n    except OSError:\n        pass\nprint('sent')\n")
    with CodeVerifier(settings, workers=1) as verifier:
        for _ in range(3):
            assert verifier.verify(_stdio(program, "sent")).passed
        assert len(verifier._idle) == 1 and verifier._idle[0].programs == 3


def test_retired_sandboxes_leave_no_zombie(settings):
    """As a subreaper (as pid 1 would), this process collects every sandbox process it retires."""
    import ctypes

    def zombies() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[0] == "Z" and int(fields[1]) == os.getpid():
                    found.append(int(entry))
        return found

    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER (test_code_sandbox sets it too)
    for program in ("print(1)\n", "while True:\n    pass\n"):
        sandbox = sandbox_module.Sandbox(settings)
        sandbox.run(_stdio(program, "1"))
        sandbox.close()
    assert zombies() == []


def test_a_failed_isolation_step_refuses_in_one_line(settings, monkeypatch):
    """If any step fails (here: a tmpfs mount on a folder that does not exist), the sandbox does
    not start programs with weaker isolation: it refuses, in one line."""
    broken = dataclasses.replace(settings, disk_files=settings.disk_files + 1)
    original = SandboxSettings.bwrap_limits

    def bad_limits(self):
        limits = original(self)
        limits["mounts"].append(["/no/such/folder", "0777", 1 << 20, 16])
        return limits

    monkeypatch.setattr(SandboxSettings, "bwrap_limits", bad_limits)
    sandbox_module._bwrap_problem.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as caught:
            check_sandbox(broken)
    finally:
        sandbox_module._bwrap_problem.cache_clear()
    assert "\n" not in str(caught.value) and "mount a tmpfs on /no/such/folder" in str(caught.value)
