"""Many programs at once: a bounded number of sandboxes run in parallel.

The verifier's own work per program is small (write the suite, read the events, compare); the
programs run in their sandbox processes. So a pool of threads, each driving one sandbox at a time,
gives bounded concurrency without copying the caller's process (``fork`` of a trainer holding a
model would be slow and unsafe with its threads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from primekit.verifiers.code.sandbox import SandboxSettings, check_sandbox, run_suite
from primekit.verifiers.code.suite import TestSuite, Verdict

__all__ = ["CodeVerifier", "default_workers"]


def default_workers() -> int:
    """One sandbox per CPU: the programs, not the verifier, use the CPUs."""
    return max(1, os.cpu_count() or 1)


class CodeVerifier:
    """Runs suites in sandboxes, ``workers`` at a time.

    ``check_sandbox`` runs at construction, so a machine without namespaces fails here, in one
    line, before any program is run.
    """

    def __init__(self, settings: SandboxSettings | None = None, workers: int | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.workers = workers or default_workers()
        if self.workers < 1:
            raise ValueError(f"code verifier workers must be >= 1; got {self.workers}")
        self.backend = check_sandbox(self.settings)

    def verify(self, suite: TestSuite) -> Verdict:
        return run_suite(suite, self.settings)

    def verify_many(self, suites: Sequence[TestSuite | None] | Iterable[TestSuite | None],
                    progress: str | None = None) -> list[Verdict | None]:
        """Verdicts in the order of ``suites`` (None stays None: a row that had nothing to run).
        ``progress`` names a tqdm bar to show."""
        suites = list(suites)
        todo = [i for i, suite in enumerate(suites) if suite is not None]
        verdicts: list[Verdict | None] = [None] * len(suites)
        if not todo:
            return verdicts
        with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as executor:
            futures = executor.map(lambda i: (i, run_suite(suites[i], self.settings)), todo)
            if progress:
                from tqdm.auto import tqdm

                futures = tqdm(futures, total=len(todo), desc=progress, unit="program")
            for index, verdict in futures:
                verdicts[index] = verdict
        return verdicts
