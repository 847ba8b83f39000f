"""Time- and memory-limited symbolic comparisons in worker processes.

math-verify's own timeout uses ``signal.alarm``, which only works on the main thread of the
main interpreter, and no signal can interrupt sympy while it multiplies huge integers in C.
So every symbolic comparison runs in a separate worker process (started with ``subprocess``,
so it also works inside daemonic multiprocessing workers and from any thread):

* inside the worker, an interval timer on the worker's own main thread stops runaway Python
  code at the deadline, and an address-space limit turns a memory blow-up into ``MemoryError``;
* outside, the caller waits for the answer only until the deadline plus a short grace, then
  kills the worker and starts a replacement in the background.

A timeout, a crash or any error counts as "not equal". Workers are kept in a pool and reused
(starting one costs about a second of imports); one thread uses one worker at a time, and a
worker left idle for ``IDLE_EXIT_SECONDS`` exits by itself.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["compare", "prestart"]

GRACE_SECONDS = 0.5  # how long past the deadline the caller waits before killing the worker
IDLE_EXIT_SECONDS = 120.0  # a worker nobody has used for this long exits by itself
MEMORY_HEADROOM_BYTES = 2 << 30  # address space a worker may add beyond what it uses at start
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


class _TimeLimitExceeded(BaseException):
    """Raised in the worker by its interval timer; a BaseException so library code that
    catches ``Exception`` cannot swallow it."""


class _Worker:
    """Handle on one worker process, used by one thread at a time."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from primekit.verifiers.math.worker import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C goes to the caller only
        )
        self.ready = False
        self._buffer = b""
        self._requests = 0

    def _read_line(self, deadline: float) -> bytes | None:
        """Next line from the worker, or None if it did not come before ``deadline``."""
        fd = self.process.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise BrokenPipeError("worker exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def compare(self, pred: str, gold: str, deadline: float) -> bool | None:
        """The worker's verdict, or None if the deadline passed first (the worker is then
        killed unless it was still starting up)."""
        if not self.ready:
            if self._read_line(deadline) is None:
                return None
            self.ready = True
        seconds = deadline - time.monotonic()
        if seconds <= 0.01:
            return None
        self._requests += 1
        request = {"id": self._requests, "pred": pred, "gold": gold, "seconds": seconds}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        line = self._read_line(deadline + GRACE_SECONDS)
        if line is None:
            self.kill()
            return None
        reply = json.loads(line)
        return bool(reply["equal"]) if reply.get("id") == self._requests else None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _Pool:
    """Idle workers, shared by all threads of this process."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._busy = 0
        self._lock = threading.Lock()

    def acquire(self) -> _Worker:
        """An idle worker, preferring one that has finished starting; a new one if none."""
        with self._lock:
            self._busy += 1
            for worker in [w for w in self._idle if not w.alive()]:
                self._idle.remove(worker)
                worker.kill()
            if self._idle:
                ready = [w for w in self._idle if w.ready]
                worker = ready[-1] if ready else self._idle[-1]
                self._idle.remove(worker)
                return worker
        return _Worker()

    def release(self, worker: _Worker) -> None:
        if not worker.alive():
            worker.kill()
            worker = _Worker()  # start the replacement now; it loads while others work
        with self._lock:
            self._busy -= 1
            self._idle.append(worker)

    def prestart(self, count: int) -> None:
        """Start workers (without waiting for them) until ``count`` exist."""
        with self._lock:
            missing = count - self._busy - len(self._idle)
            self._idle.extend(_Worker() for _ in range(missing))

    def shrink(self, keep: int) -> None:
        with self._lock:
            extra, self._idle = self._idle[keep:], self._idle[:keep]
        for worker in extra:
            worker.kill()

    def forget(self) -> None:
        """In a forked child: drop the parent's workers without touching them."""
        for worker in self._idle:
            for stream in (worker.process.stdin, worker.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        self._idle = []
        self._busy = 0
        self._lock = threading.Lock()


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)
atexit.register(_POOL.shrink, 0)


def compare(pred: str, gold: str, deadline: float) -> bool:
    """Symbolic equivalence of two cleaned answers, decided before ``deadline`` (monotonic
    clock) plus a short grace; False on timeout, crash or error."""
    worker = _POOL.acquire()
    try:
        return bool(worker.compare(pred, gold, deadline))
    except (OSError, ValueError):
        worker.kill()
        return False
    finally:
        _POOL.release(worker)


def prestart(count: int = 1) -> None:
    """Start ``count`` workers in the background, so that their imports (about a second)
    overlap with other work instead of delaying the first symbolic comparison."""
    _POOL.prestart(count)




# ----------------------------------------------------------------------------------------------
# worker side


def _on_alarm(signum: int, frame: object) -> None:
    raise _TimeLimitExceeded()


def _limit_memory() -> None:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    limit = pages * resource.getpagesize() + MEMORY_HEADROOM_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _judge(request: dict, symbolic_equal) -> bool:
    signal.setitimer(signal.ITIMER_REAL, max(float(request["seconds"]), 0.01))
    try:
        return symbolic_equal(str(request["pred"]), str(request["gold"]))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _requests(idle_seconds: float):
    """Lines from stdin until it closes or stays silent for ``idle_seconds``."""
    poller = select.poll()
    poller.register(0, select.POLLIN)
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            yield line
        if not poller.poll(idle_seconds * 1000):
            return
        chunk = os.read(0, 1 << 16)
        if not chunk:
            return
        buffer += chunk


def _serve() -> None:
    """Worker loop: one JSON request per line on stdin, one JSON verdict per line on stdout."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints from libraries go nowhere
    logging.disable(logging.CRITICAL)
    signal.signal(signal.SIGALRM, _on_alarm)
    from primekit.verifiers.math.symbolic import symbolic_equal  # loads math_verify: imported on use

    if sys.platform.startswith("linux"):
        _limit_memory()
    replies.write('{"ready": true}\n')
    replies.flush()
    for line in _requests(IDLE_EXIT_SECONDS):
        request = json.loads(line)
        try:
            equal = _judge(request, symbolic_equal)
        except (Exception, _TimeLimitExceeded):
            equal = False
        replies.write(json.dumps({"id": request["id"], "equal": equal}) + "\n")
        replies.flush()

