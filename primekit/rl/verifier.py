"""The outcome reward of PRIME: 1 when a response is right, else 0 — graded by the verifier of the
row's kind.

These are TRL reward functions: ``GRPOTrainer`` calls them with the sampled ``completions`` and
every extra dataset column as a keyword list (already repeated for the n samples of a prompt):

- :class:`OutcomeVerifier` (the trainer builds one with ``PrimeConfig.code_reward``; the module's
  :func:`outcome_accuracy` is one with the ``"pass_all"`` code reward) reads ``answer`` and, when
  the dataset has one, the ``task`` column that :mod:`primekit.rl.data` fills from Eurus-2-RL-Data's ``ability``. Math
  rows go to the math grader (:mod:`primekit.verifiers.math`: the boxed answer against the gold
  one, never evaluating model output); code rows go to the code verifier
  (:mod:`primekit.verifiers.code`: the last ```python block runs against the row's tests, in a
  sandbox), with the row's ``answer`` holding its test cases.
- :func:`code_accuracy` reads ``test_cases`` for datasets that are code only.

A bad row (malformed test JSON, an empty response, an unknown task) scores 0 and is counted in a
warning (logged at the 1st, 10th, 100th, ... occurrence) and in the ``verifier/bad_rows`` metric;
it never stops a training step. Per-kind accuracies are logged as ``verifier/math_accuracy`` and
``verifier/code_accuracy`` (like the official run's per-``ability`` reward metrics).

Code reward (``code_reward``): ``"pass_all"`` gives 1 only when every test passes; ``"prime"``
(PrimeConfig's default) is the official checker's score (PRIME
``training/verl/utils/reward_score/prime.py:67-76``): 1 when every test passes, else the fraction
of the first 10 tests that pass.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from primekit.verifiers.code import CodeVerifier, SandboxSettings, TestFormatError, apps_suite, extract_program
from primekit.verifiers.math import grade

__all__ = ["ANSWER_COLUMN", "TASK_COLUMN", "TASKS", "CODE_REWARDS", "OutcomeVerifier", "completion_text",
           "outcome_accuracy", "code_accuracy", "normalize_task"]

#: Dataset column holding the gold answer (math) or the test cases (code).
ANSWER_COLUMN = "answer"
#: Dataset column naming each row's verifier.
TASK_COLUMN = "task"
TASKS = ("math", "code")
CODE_REWARDS = ("pass_all", "prime")
#: How the official checker scores a code answer that fails some test: over the first 10 tests.
PRIME_CODE_TESTS = 10
_TASK_NAMES = {"math": "math", "code": "code", "coding": "code"}
logger = logging.getLogger(__name__)


def normalize_task(value: Any) -> str | None:
    """``"math"`` or ``"code"`` for a task / ability value (Eurus uses ``math``/``code``, its raw
    form ``Math``/``Coding``); None for anything else."""
    return _TASK_NAMES.get(str(value).strip().lower()) if value is not None else None


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The response text of a TRL completion: a string, or (conversational data) a list of messages
    whose last one is the assistant's reply."""
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    content = completion[-1].get("content", "")
    if isinstance(content, list):  # content blocks: keep the text ones
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content)


def _local_workers() -> int:
    """Sandboxes per training process: the CPUs shared by the processes of this node."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(1, per_node))


class OutcomeVerifier:
    """A TRL reward function that routes every row to the verifier of its task (see the module
    docstring). One instance keeps its sandbox pool and its bad-row counts across steps."""

    def __init__(self, code_settings: Any = None, code_workers: int | None = None, code_reward: str = "pass_all",
                 name: str = "outcome_accuracy") -> None:
        if code_reward not in CODE_REWARDS:
            raise ValueError(f"code_reward must be one of {', '.join(CODE_REWARDS)}; got '{code_reward}'")
        self.__name__ = name  # what TRL logs the reward under
        self.code_settings = code_settings
        self.code_workers = code_workers
        self.code_reward = code_reward
        self.bad_rows: Counter[str] = Counter()
        self._verifier = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_verifier"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- bad rows ------------------------------------------------------------------------------

    def _bad_row(self, reason: str, detail: str) -> float:
        with self._lock:
            self.bad_rows[reason] += 1
            count = self.bad_rows[reason]
        if math.log10(count).is_integer():  # 1st, 10th, 100th, ...
            logger.warning("outcome reward 0 for %d row(s) so far: %s (latest: %s)", count, reason, detail[:200])
        return 0.0

    # -- verifiers -----------------------------------------------------------------------------

    def code_verifier(self):
        """The sandbox pool, made on first use (it checks the sandbox can start). An all-or-nothing
        reward needs no test after the first failure, so those are skipped (a program stuck in a
        loop costs one test's time limit, not one per test)."""
        with self._lock:
            if self._verifier is None:
                settings = self.code_settings or SandboxSettings()
                if self.code_reward == "pass_all":
                    settings = dataclasses.replace(settings, stop_on_failure=True)
                self._verifier = CodeVerifier(settings, self.code_workers or _local_workers())
            return self._verifier

    def _math_scores(self, responses: list[str], golds: list[Any]) -> list[float]:

        return [1.0 if grade(response, str(gold)) else 0.0 for response, gold in zip(responses, golds)]

    def _code_scores(self, responses: list[str], test_cases: list[Any]) -> list[float]:
        suites, scores = [], [0.0] * len(responses)
        for response, cases in zip(responses, test_cases):
            program = extract_program(response)
            suite = None
            if not program.strip():
                self._bad_row("empty response or empty code block", response)
            else:
                try:
                    suite = apps_suite(program, cases)
                except TestFormatError as error:
                    self._bad_row("unreadable test cases", str(error))
            suites.append(suite)
        for index, verdict in enumerate(self.code_verifier().verify_many(suites)):
            if verdict is None:
                continue
            if verdict.error is not None and verdict.error.startswith("program defines no function"):
                self._bad_row("program lacks the fn_name target", verdict.error)
            scores[index] = self.code_score(verdict)
        return scores

    def code_score(self, verdict) -> float:
        if self.code_reward == "prime":
            return verdict.pass_fraction(first=PRIME_CODE_TESTS)
        return 1.0 if verdict.passed else 0.0

    # -- the reward function -------------------------------------------------------------------

    def __call__(self, completions: Sequence[Any], answer: Sequence[Any], task: Sequence[Any] | None = None,
                 log_metric: Callable[[str, float], None] | None = None, **_: Any) -> list[float]:
        """One score per completion; other keyword arguments (prompts, ids, trainer state, other
        columns) are ignored."""
        if len(answer) != len(completions) or (task is not None and len(task) != len(completions)):
            raise ValueError(f"{self.__name__}: {len(completions)} completions but {len(answer)} answers"
                             + ("" if task is None else f" and {len(task)} tasks"))
        responses = [completion_text(c) for c in completions]
        kinds = [normalize_task(t) for t in task] if task is not None else ["math"] * len(responses)
        scores = [0.0] * len(responses)
        bad_before = sum(self.bad_rows.values())
        for kind in TASKS:
            rows = [i for i, k in enumerate(kinds) if k == kind]
            if not rows:
                continue
            grade = self._math_scores if kind == "math" else self._code_scores
            for row, score in zip(rows, grade([responses[i] for i in rows], [answer[i] for i in rows])):
                scores[row] = score
            if log_metric is not None:
                log_metric(f"verifier/{kind}_accuracy", sum(scores[i] for i in rows) / len(rows))
        for index, kind in enumerate(kinds):
            if kind is None:
                self._bad_row("unknown task", repr(task[index]))
        if log_metric is not None:
            log_metric("verifier/bad_rows", float(sum(self.bad_rows.values()) - bad_before))
        return scores


#: A ready reward function for math and code rows, routed by the ``task`` column (all-or-nothing code reward).
outcome_accuracy = OutcomeVerifier()
_code_only = OutcomeVerifier(name="code_accuracy")


def code_accuracy(completions: Sequence[Any], test_cases: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for each completion whose program passes all of its row's ``test_cases`` (APPS /
    Eurus-2-RL-Data JSON, a string or a dict), else 0.0; bad rows score 0 with a counted warning."""
    kwargs.pop("task", None)
    return _code_only(completions, test_cases, task=["code"] * len(completions), **kwargs)
