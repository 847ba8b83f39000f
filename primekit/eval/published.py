"""The published graders, run as their authors ran them: ``prime-eval run --grader prime|qwen``.

``primekit`` (the default) reads a response with the protocol's extraction and decides with
primekit's grader. ``prime`` and ``qwen`` are the published code itself -- extraction and
equivalence -- read from the repositories at their pinned commits (:mod:`primekit.eval.upstream`:
``git archive`` into the cache, never copied into primekit) and run in their own environment
(``.venv-grader``, built by ``make grader-env`` with the repositories' pins: sympy 1.12,
antlr4 4.11.0 for PRIME, 4.11.1 for the Qwen2.5-Math harness), apart from primekit's:

* ``prime``: AIME 2024, AMC and MATH-500 by PRIME's scripts (``eval/Math/{aime,amc,math}``:
  ``match_answer`` and ``utils/grader.py:math_equal``); Minerva Math and OlympiadBench by PRIME's
  copy of the Qwen2.5-Math harness (``eval/Math/Qwen25-Math/evaluation``, as its ``sh/eval.sh``
  runs them); any other benchmark by the MATH script, PRIME's general rule.
* ``qwen``: every benchmark by Qwen2.5-Math's harness (``evaluation/``): ``extract_answer`` with
  ``strip_string``, the multiple-choice re-read for letter golds, ``math_equal``; the benchmark's
  name is the harness's ``data_name`` (primekit's benchmark names are the harness's).

The published code evaluates model text (``eval``, sympy), so each runs in a worker process with
no network (``unshare --net`` where the system allows it), limited memory, CPU time and file
writes, an empty working folder, and a wall limit per response past which the worker is killed
and restarted and the response graded wrong -- 3 s for the Qwen harness, as its ``evaluate.py:37``
pool does; 30 s for PRIME's scripts, which time their own sympy calls.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import select
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from primekit.errors import InputError
from primekit.eval.upstream import PINNED, PRIME_REPO, QWEN_REPO, export_tree
from primekit.io import atomic_write_text
from primekit.paths import REPO_ROOT
from primekit.verifiers.math import GRADER_VERSION

GRADERS = ("primekit", "prime", "qwen")
WORKER = Path(__file__).resolve().parent / "_published_worker.py"
PRIME_QWEN_HARNESS = "eval/Math/Qwen25-Math/evaluation"
QWEN_HARNESS = "evaluation"
# What of each repository the graders import (an export of only these paths).
_HARNESS_FILES = ("parser.py", "grader.py", "utils.py", "examples.py", "latex2sympy")
_EXPORTS = {PRIME_REPO: ("eval/Math/math", "eval/Math/aime", "eval/Math/amc", "eval/utils",
                         *(f"{PRIME_QWEN_HARNESS}/{name}" for name in _HARNESS_FILES)),
            QWEN_REPO: tuple(f"{QWEN_HARNESS}/{name}" for name in _HARNESS_FILES)}
_PRIME_SCRIPT_OF = {"aime2024": "aime", "amc": "amc", "math500": "math"}
_PRIME_HARNESS_BENCHMARKS = ("minerva_math", "olympiadbench")  # PRIME's sh/eval.sh DATA_NAME
MEMORY_BYTES = 4 << 30
CPU_SECONDS = 1800
START_SECONDS = 120.0


@dataclass(frozen=True)
class Rule:
    """Which published code judges a benchmark: a worker kind, the repository and folder it runs
    from, the request fields that select the rule, and the wall limit per response."""

    kind: str
    repo: str
    folder: str
    fields: tuple[tuple[str, str], ...]
    seconds: float

    def describe(self) -> str:
        what = dict(self.fields)
        name = f"{what['script']} script" if "script" in what else f"harness, data_name {what['data_name']}"
        return f"{self.repo}@{PINNED[self.repo][:7]} {name}"


def rule_for(grader: str, benchmark: str) -> Rule:
    """The published rule ``grader`` applies to ``benchmark``."""
    if grader == "qwen":
        return Rule("qwen-harness", QWEN_REPO, QWEN_HARNESS, (("data_name", benchmark),), 3.0)
    if grader == "prime":
        if benchmark in _PRIME_HARNESS_BENCHMARKS:
            return Rule("qwen-harness", PRIME_REPO, PRIME_QWEN_HARNESS, (("data_name", benchmark),), 3.0)
        return Rule("prime-scripts", PRIME_REPO, "", (("script", _PRIME_SCRIPT_OF.get(benchmark, "math")),), 30.0)
    raise InputError(f"unknown grader '{grader}' (choose from {', '.join(GRADERS)})")


def grader_python() -> Path:
    """The interpreter of the graders' environment: ``PRIMEKIT_GRADER_PYTHON``, else the
    repository's ``.venv-grader``."""
    configured = os.environ.get("PRIMEKIT_GRADER_PYTHON")
    # absolute, not resolved: the worker runs in another folder, and a venv's python is a link
    python = Path(os.path.abspath(configured)) if configured else REPO_ROOT / ".venv-grader" / "bin" / "python"
    if not python.exists():
        raise InputError(f"the published graders run in their own environment, and {python} is not there: "
                         "build it with `make grader-env` (or set PRIMEKIT_GRADER_PYTHON)")
    return python


def environment(python: Path) -> str:
    """The graders' packages that decide verdicts, for the report (``qwen-site``: the harness's
    own antlr4, first on its path)."""
    versions = []
    venv = python.parent.parent
    for folder in [venv / "qwen-site", *sorted(venv.glob("lib/python*/site-packages"))]:
        for package in ("sympy", "antlr4_python3_runtime", "regex", "word2number"):
            found = sorted(folder.glob(f"{package}-*.dist-info"))
            where = " (Qwen harness)" if folder.name == "qwen-site" else ""
            versions += [found[0].name[:-len(".dist-info")].replace("_python3_runtime", "") + where] if found else []
    return ", ".join(versions)


@functools.lru_cache(maxsize=1)
def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


def limit_worker() -> None:
    """The published graders' worker limits: address space, CPU time, no file written, its own
    process group (so a kill takes what it started)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # writes no file
    os.setsid()


class PublishedWorker:
    """One published rule's worker process (started on first use, restarted after a kill)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.python = grader_python()
        root = export_tree(rule.repo, _EXPORTS[rule.repo])
        self.source = root / rule.folder if rule.folder else root
        self.folder = tempfile.TemporaryDirectory(prefix="primekit-grader-")
        self.process: subprocess.Popen | None = None
        self.timeouts = 0

    def _start(self) -> None:
        site = self.python.parent.parent / "qwen-site"
        path = [str(site)] if self.rule.kind == "qwen-harness" and site.is_dir() else []
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(path),
               "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        command = [str(self.python), "-s", str(WORKER), self.rule.kind, str(self.source)]
        if _can_unshare():
            command = ["unshare", "--net", *command]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=self.folder.name, env=env,
                                        preexec_fn=limit_worker)
        if self._reply(START_SECONDS) is None:
            error = self._stop()
            raise InputError(f"the {self.rule.describe()} grader did not start in {self.python}: "
                             + (error.strip().splitlines() or ["no output"])[-1])

    def _reply(self, seconds: float) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        line = self.process.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def _stop(self) -> str:
        error = ""
        if self.process is not None:
            os.killpg(self.process.pid, 9)
            self.process.wait()
            error = self.process.stderr.read() if self.process.stderr else ""
            self.process = None
        return error

    def judge(self, response: str, gold: str) -> tuple[str | None, bool]:
        """(the answer the published code extracted, its verdict); a response past the wall limit
        is wrong, as in the published harness."""
        if self.process is None:
            self._start()
        request = {**dict(self.rule.fields), "response": response, "gold": gold}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._reply(self.rule.seconds)
        if reply is None:
            self.timeouts += 1
            self._stop()
            return None, False
        return reply["extracted"], bool(reply["equal"])

    def close(self) -> None:
        self._stop()
        self.folder.cleanup()


class PublishedGrader:
    """A ``prime-eval`` grade function (responses, golds) -> (extracted, correct) for one
    benchmark under a published grader; use it in a ``with`` block."""

    def __init__(self, grader: str, benchmark: str) -> None:
        self.worker = PublishedWorker(rule_for(grader, benchmark))

    def __call__(self, responses: Sequence[str], golds: Sequence[str]) -> list[tuple[str | None, bool]]:
        return [self.worker.judge(response, gold) for response, gold in zip(responses, golds, strict=True)]

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> PublishedGrader:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def grader_record(grader: str, benchmarks: Sequence[str]) -> dict:
    """What ``summary.json`` says of the grader: its name, version or sources, and environment."""
    if grader == "primekit":
        return {"name": "primekit", "version": GRADER_VERSION}
    repos = sorted({rule_for(grader, name).repo for name in benchmarks})
    return {"name": grader, "version": ", ".join(f"{repo}@{PINNED[repo][:7]}" for repo in repos),
            "rules": {name: rule_for(grader, name).describe() for name in benchmarks},
            "environment": environment(grader_python())}


DISAGREEMENTS_FILE = "disagreements.md"
MAX_LISTED = 200


def write_disagreements(out: Path, samples: Sequence[dict], graders: Sequence[str]) -> dict[str, dict[str, float]]:
    """``disagreements.md`` in ``out``: per benchmark, each grader's accuracy and how many samples
    the graders judge differently, then those samples (the first MAX_LISTED) with what each grader
    extracted and decided. Returns the accuracies, per benchmark and grader."""
    def cell(text) -> str:
        text = "–" if text is None else str(text).replace("\n", " ")
        text = text if len(text) <= 80 else text[:77] + "..."
        return "`" + text.replace("`", "'").replace("|", "\\|") + "`"

    by_benchmark: dict[str, list[dict]] = {}
    for sample in samples:
        if "verdicts" in sample:
            by_benchmark.setdefault(sample["benchmark"], []).append(sample)
    accuracy, differing = {}, []
    lines = ["# Graders compared", "", f"Graders: {', '.join(graders)} (the first decides `correct`).", "",
             "| benchmark | samples | " + " | ".join(graders) + " | disagreements |",
             "|---|---|" + "---|" * len(graders) + "---|"]
    for name, rows in by_benchmark.items():
        accuracy[name] = {g: sum(r["verdicts"][g]["correct"] for r in rows) / len(rows) for g in graders}
        apart = [r for r in rows if len({r["verdicts"][g]["correct"] for g in graders}) > 1]
        differing += apart
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(f"{100 * accuracy[name][g]:.1f}" for g in graders)
                     + f" | {len(apart)} |")
    lines += ["", "| benchmark | problem | sample | gold | " + " | ".join(
        f"{g} extracted | {g}" for g in graders) + " |", "|---|---|---|---|" + "---|---|" * len(graders)]
    for sample in differing[:MAX_LISTED]:
        lines.append(f"| {sample['benchmark']} | {cell(sample['problem_id'])} | {sample['sample_index']} | "
                     f"{cell(sample['answer'])} | " + " | ".join(
                         f"{cell(sample['verdicts'][g]['pred'])} | {'right' if sample['verdicts'][g]['correct'] else 'wrong'}"
                         for g in graders) + " |")
    if len(differing) > MAX_LISTED:
        lines.append(f"\n{len(differing) - MAX_LISTED} more in samples.jsonl (their `verdicts` differ).")
    atomic_write_text(Path(out) / DISAGREEMENTS_FILE, "\n".join(lines) + "\n")
    return accuracy
