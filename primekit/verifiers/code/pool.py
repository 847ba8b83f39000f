"""Many programs at once: a bounded number of sandboxes run in parallel, and are reused.

The verifier's own work per program is small (send the suite, read the events, compare); the
programs run in their sandbox processes. So a pool of threads, each driving one sandbox at a time,
gives bounded concurrency without copying the caller's process (``fork`` of a trainer holding a
model would be slow and unsafe with its threads). Idle sandboxes are kept for the next program
(start-up is most of the cost of a short program); each still runs every program in a fresh
process tree (see :class:`primekit.verifiers.code.sandbox.Sandbox`).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm

from primekit.verifiers.code.launch import check_sandbox
from primekit.verifiers.code.sandbox import Sandbox
from primekit.verifiers.code.settings import SandboxSettings
from primekit.verifiers.code.suite import TestSuite, Verdict

__all__ = ["CodeVerifier", "default_workers"]

_OPEN_VERIFIERS: weakref.WeakSet = weakref.WeakSet()


def default_workers() -> int:
    """One sandbox per CPU: the programs, not the verifier, use the CPUs."""
    return max(1, os.cpu_count() or 1)


class CodeVerifier:
    """Runs suites in sandboxes, ``workers`` at a time; ``close()`` (or a ``with`` block) ends the
    idle ones, and so does the end of the process.

    ``check_sandbox`` runs at construction, so a machine without namespaces fails here, in one
    line, before any program is run.
    """

    def __init__(self, settings: SandboxSettings | None = None, workers: int | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.workers = workers or default_workers()
        if self.workers < 1:
            raise ValueError(f"code verifier workers must be >= 1; got {self.workers}")
        self.backend = check_sandbox(self.settings)
        self._idle: list[Sandbox] = []
        self._lock = threading.Lock()
        _OPEN_VERIFIERS.add(self)

    def _acquire(self) -> Sandbox:
        with self._lock:
            while self._idle:
                sandbox = self._idle.pop()
                if sandbox.alive():
                    return sandbox
                sandbox.close()  # it exited while idle
        return Sandbox(self.settings)

    def _release(self, sandbox: Sandbox) -> None:
        if sandbox.reusable and sandbox.alive():
            with self._lock:
                if len(self._idle) < self.workers:
                    self._idle.append(sandbox)
                    return
        sandbox.close()

    def verify(self, suite: TestSuite) -> Verdict:
        sandbox = self._acquire()
        try:
            return sandbox.run(suite)
        finally:
            self._release(sandbox)

    def verify_many(self, suites: Iterable[TestSuite | None], progress: str | None = None) -> list[Verdict | None]:
        """Verdicts in the order of ``suites`` (None stays None: a row that had nothing to run).
        ``progress`` names a tqdm bar to show."""
        suites = list(suites)
        todo = [i for i, suite in enumerate(suites) if suite is not None]
        verdicts: list[Verdict | None] = [None] * len(suites)
        if not todo:
            return verdicts
        with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as executor:
            futures = executor.map(lambda i: (i, self.verify(suites[i])), todo)
            if progress:
                futures = tqdm(futures, total=len(todo), desc=progress, unit="program")
            for index, verdict in futures:
                verdicts[index] = verdict
        return verdicts

    def close(self) -> None:
        """End the idle sandboxes (a later ``verify`` starts new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for sandbox in idle:
            sandbox.close()

    def _forget(self) -> None:
        """In a forked child: the sandboxes belong to the parent; drop them without touching them."""
        self._idle = []
        self._lock = threading.Lock()

    def __enter__(self) -> CodeVerifier:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"settings": self.settings, "workers": self.workers, "backend": self.backend}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._idle, self._lock = [], threading.Lock()
        _OPEN_VERIFIERS.add(self)


def _close_all() -> None:
    for verifier in list(_OPEN_VERIFIERS):
        verifier.close()


def _forget_all() -> None:
    for verifier in list(_OPEN_VERIFIERS):
        verifier._forget()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_forget_all)
