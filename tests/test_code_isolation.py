"""What a sandbox takes from the machine stays within its stated bound, and nothing of the
machine's or of one program's reaches another: memory (processes, System V shared memory, memfds,
tmpfs files and inodes) within ``memory_mb``; IPC objects gone for the next program; a fresh, empty
session keyring with the key system calls blocked; pid 1 ignores SIGINT/SIGTERM; retired sandboxes
leave no zombie; a failed isolation step is a one-line refusal."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import threading
import time

import pytest

from primekit.verifiers.code import CodeVerifier, SandboxSettings, SandboxUnavailable, TestSuite, check_sandbox
from primekit.verifiers.code import launch
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


#: A hostile program's look at the keyrings it can reach: the caller's key (DESCRIPTION, whose payload
#: is PAYLOAD) found in /proc/keys, in its session keyring (@s) by KEYCTL_READ, KEYCTL_DESCRIBE or
#: KEYCTL_SEARCH, or read by id; and whether it could add a key. Prints what it found and the
#: errno of each key system call, so a verdict shows the leak itself.
KEY_SNOOP = """\
import ctypes, json, os
ADD_KEY, REQUEST_KEY, KEYCTL = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}[os.uname().machine]
DESCRIBE, SEARCH, READ, SESSION = 6, 10, 11, -3
libc = ctypes.CDLL(None, use_errno=True)
leaks, errnos = [], []

def call(*args):
    ctypes.set_errno(0)
    result = libc.syscall(*args)
    errnos.append(ctypes.get_errno() if result < 0 else 0)
    return result

def look():
    keys = open('/proc/keys').read() if os.path.exists('/proc/keys') else ''
    leaks.extend('/proc/keys: ' + line for line in keys.splitlines() if 'DESCRIPTION' in line)
    buffer = ctypes.create_string_buffer(4096)
    size = call(KEYCTL, READ, SESSION, buffer, 4096)
    session_keys = list(memoryview(buffer.raw[:max(size, 0)]).cast('i')) if 0 < size <= 4096 else []
    found = call(KEYCTL, SEARCH, SESSION, b'user', b'DESCRIPTION', 0)
    requested = call(REQUEST_KEY, b'user', b'DESCRIPTION', None, 0)
    for key in session_keys + [k for k in (found, requested) if k > 0]:
        for operation in (DESCRIBE, READ):
            size = libc.syscall(KEYCTL, operation, key, buffer, 4096)
            if size > 0:
                text = buffer.raw[:min(size, 4096)].decode('latin-1')
                if 'DESCRIPTION' in text or 'PAYLOAD' in text:
                    leaks.append(f'key {key}: {text}')
    if call(KEYCTL, DESCRIBE, SESSION, buffer, 4096) >= 0:
        leaks.append('describe @s: ' + buffer.value.decode('latin-1'))
    if call(ADD_KEY, b'user', b'planted', b'x', 1, SESSION) >= 0:
        leaks.append('add_key succeeded')
    return json.dumps({'leaks': leaks, 'errnos': errnos})
"""

#: Runs in a process of its own: joins a fresh anonymous session keyring (nothing of this machine's
#: keyrings is touched), adds a user key with a random payload to it, checks that it can read the key
#: back itself (else the test would prove nothing), then verifies the suites given on stdin in that
#: keyring's session and prints each verdict.
KEY_HOLDER = """\
import ctypes, json, os, sys
from primekit.verifiers.code import SandboxSettings, TestSuite, run_suite
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)
request = json.load(sys.stdin)
payload = request["payload"].encode()
assert libc.syscall(KEYCTL, 1, None) > 0, "cannot join a fresh session keyring"
key = libc.syscall(ADD_KEY, b"user", request["description"].encode(), payload, len(payload), -3)
buffer = ctypes.create_string_buffer(256)
readable = libc.syscall(KEYCTL, 11, key, buffer, 256) == len(payload) and buffer.raw[:len(payload)] == payload
settings = SandboxSettings(backend="bwrap", **request["limits"])
verdicts = [run_suite(TestSuite(**suite), settings) for suite in request["suites"]]
print(json.dumps({"key": key, "readable": readable,
                  "verdicts": [[verdict.passed, str(verdict)] for verdict in verdicts]}))
"""


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="key system call numbers")
def test_programs_see_no_key_of_the_caller_and_cannot_add_keys(settings):
    """In each kind of program process (stdin/stdout, fn_name call, and a script-mode suite whose
    asserts call the program), a hostile program finds no key of the process that runs the verifier
    (by /proc/keys, its session keyring, a search or a read) and every key system call fails with
    EPERM; the caller's key is really there for the caller."""
    description, payload = f"primekit-caller-{secrets.token_hex(6)}", secrets.token_hex(16)
    snoop = KEY_SNOOP.replace("DESCRIPTION", description).replace("PAYLOAD", payload)
    sealed = '{"leaks": [], "errnos": [1, 1, 1, 1, 1]}'  # five key calls, each EPERM
    suites = [
        dict(mode="stdio", program=snoop + "print(look())\n", tests=({"input": ""},), expected=(sealed,)),
        dict(mode="call", program=snoop, tests=({"args": []},), expected=(sealed,), fn_name="look"),
        dict(mode="script", program=snoop, tests=({"code": f"assert look() == {sealed!r}, look()"},),
             expected=(None,), prelude="def look():\n    return 'the prelude'\n", targets=("look",)),
    ]
    holder = subprocess.run([sys.executable, "-c", KEY_HOLDER], capture_output=True, text=True, timeout=120,
                            input=json.dumps({"description": description, "payload": payload,
                                              "limits": LIMITS, "suites": suites}))
    assert holder.returncode == 0, holder.stderr[-2000:]
    report = json.loads(holder.stdout.splitlines()[-1])
    assert report["key"] > 0 and report["readable"], report
    leaky = [(suite["mode"], verdict) for (passed, verdict), suite in zip(report["verdicts"], suites) if not passed]
    assert not leaky, leaky


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
    retired: set[int] = set()
    for program in ("print(1)\n", "while True:\n    pass\n"):
        sandbox = sandbox_module.Sandbox(settings)
        sandbox.run(_stdio(program, "1"))
        retired |= {sandbox.process.pid, *sandbox_module._children(sandbox.process.pid)}
        sandbox.close()
    # only this test's sandboxes: other tests' processes may also have been re-parented here
    assert set(zombies()) & retired == set()


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
    launch._bwrap_problem.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as caught:
            check_sandbox(broken)
    finally:
        launch._bwrap_problem.cache_clear()
    assert "\n" not in str(caught.value) and "mount a tmpfs on /no/such/folder" in str(caught.value)
