"""ProcessBench: can a process reward model find the first wrong step of a solution?

Each sample is a problem, a solution split into steps, and ``label``: the 0-based index of the
first erroneous step, or -1 when every step is right. A PRM gives one reward per step; the
predicted first error is the first step whose reward (``aggregation="step"``) or whose running
implicit Q value, the sum of the step rewards so far (``aggregation="q"``), falls below a
threshold. The threshold is tuned on the GSM8K split and then applied to every split.
The score of a split is the harmonic mean (F1) of the accuracy on erroneous samples (the exact
step must be found) and the accuracy on error-free samples (no step may be flagged).

Step rewards come from any ``step_scorer(problem, steps) -> list[float]``; the CLI wires it to
an implicit PRM, and tests use hand-made scorers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from primekit.errors import InputError
from primekit.io import read_json_or_jsonl, require_field
from primekit.paths import data_dir

SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")
AGGREGATIONS = ("step", "q")
StepScorer = Callable[[str, Sequence[str]], Sequence[float]]


@dataclass(frozen=True)
class ProcessBenchSample:
    id: str
    problem: str
    steps: tuple[str, ...]
    label: int
    split: str


def available_splits() -> list[str]:
    """The ProcessBench splits present in the data folder (the larger two may be left out)."""
    return [split for split in SPLITS if (data_dir() / "processbench" / f"{split}.json").is_file()]


def load_split(split: str, limit: int | None = None) -> list[ProcessBenchSample]:
    """The samples of one ProcessBench split from ``data_dir()/processbench/<split>.json``.

    ``limit`` keeps the first ``ceil(limit / 2)`` erroneous and ``floor(limit / 2)`` error-free
    samples, in file order: the files list erroneous samples first, so the first ``limit`` rows
    alone would leave the error-free accuracy (and F1) undefined.
    """
    if split not in SPLITS:
        raise InputError(f"unknown ProcessBench split '{split}' (choose from {', '.join(SPLITS)})")
    path = data_dir() / "processbench" / f"{split}.json"
    if not path.is_file():
        raise InputError(f"ProcessBench split '{split}' is not in the data folder", path=path)
    samples = []
    for index, row in enumerate(read_json_or_jsonl(path)):
        where = f"{path}[{index}]"
        steps = require_field(row, "steps", path=where, line=None, kind=list)
        label = require_field(row, "label", path=where, line=None, kind=int)
        if not steps or not all(isinstance(step, str) for step in steps):
            raise InputError("expected a non-empty list of step strings", path=where, field="steps")
        if not -1 <= label < len(steps):
            raise InputError(f"expected -1 or a step index below {len(steps)}, got {label}",
                             path=where, field="label")
        samples.append(ProcessBenchSample(
            id=str(row.get("id", f"{split}-{index}")), split=split, label=label, steps=tuple(steps),
            problem=require_field(row, "problem", path=where, line=None, kind=str)))
    if limit is None:
        return samples
    erroneous = [s for s in samples if s.label != -1][:(limit + 1) // 2]
    error_free = [s for s in samples if s.label == -1][:limit // 2]
    kept = {id(s) for s in erroneous + error_free}
    return [s for s in samples if id(s) in kept]


def aggregate(step_rewards: Sequence[float], aggregation: str) -> list[float]:
    """The per-step value compared with the threshold: the reward itself, or its running sum."""
    if aggregation == "step":
        return [float(r) for r in step_rewards]
    if aggregation == "q":
        return [float(q) for q in np.cumsum(step_rewards)]
    raise ValueError(f"unknown aggregation '{aggregation}' (choose from {', '.join(AGGREGATIONS)})")


def first_error_step(step_rewards: Sequence[float], threshold: float, aggregation: str = "step") -> int:
    """Index of the first step whose (aggregated) reward is below ``threshold``, or -1."""
    return next((index for index, value in enumerate(aggregate(step_rewards, aggregation))
                 if value < threshold), -1)


@dataclass(frozen=True)
class ProcessBenchScore:
    """``None`` marks an accuracy (and so F1) that a split without such samples leaves undefined."""

    error_accuracy: float | None    # erroneous samples whose first error was found exactly
    correct_accuracy: float | None  # error-free samples with no step flagged
    f1: float | None                # harmonic mean of the two
    num_error: int
    num_correct: int


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def score_predictions(labels: Sequence[int], predictions: Sequence[int]) -> ProcessBenchScore:
    """ProcessBench's metric: accuracy on erroneous samples, on error-free ones, and their F1."""
    if len(labels) != len(predictions):
        raise ValueError("labels and predictions differ in length")
    erroneous = [p == l for l, p in zip(labels, predictions) if l != -1]
    error_free = [p == -1 for l, p in zip(labels, predictions) if l == -1]
    error_accuracy = sum(erroneous) / len(erroneous) if erroneous else None
    correct_accuracy = sum(error_free) / len(error_free) if error_free else None
    f1 = (None if error_accuracy is None or correct_accuracy is None
          else harmonic_mean(error_accuracy, correct_accuracy))
    return ProcessBenchScore(error_accuracy, correct_accuracy, f1, len(erroneous), len(error_free))


def _first_below(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(thresholds, samples) first index below each threshold, -1 if none; NaN padding never is."""
    below = values[None, :, :] < thresholds[:, None, None]
    return np.where(below.any(axis=2), below.argmax(axis=2), -1)


def tune_threshold(step_rewards: Sequence[Sequence[float]], labels: Sequence[int],
                   aggregation: str = "step", chunk: int = 256) -> tuple[float, float]:
    """The threshold with the best F1 on these samples, and that F1.

    Predictions only change when the threshold crosses one of the observed values, so the
    candidates are the midpoints between consecutive distinct values plus one value below and one
    above them all; ties go to the smallest threshold.
    """
    if not step_rewards:
        raise ValueError("no samples to tune a threshold on")
    rows = [aggregate(r, aggregation) for r in step_rewards]
    width = max(len(r) for r in rows)
    values = np.full((len(rows), width), np.nan)
    for index, row in enumerate(rows):
        values[index, :len(row)] = row
    distinct = np.unique(values[~np.isnan(values)])
    candidates = np.concatenate([[distinct[0] - 1.0], (distinct[1:] + distinct[:-1]) / 2,
                                 [distinct[-1] + 1.0]])
    labels_array = np.asarray(labels)
    erroneous, error_free = labels_array != -1, labels_array == -1
    best_threshold, best_f1 = float(candidates[0]), -1.0
    for start in range(0, len(candidates), chunk):
        thresholds = candidates[start:start + chunk]
        hits = _first_below(values, thresholds) == labels_array[None, :]
        error_accuracy = hits[:, erroneous].mean(axis=1) if erroneous.any() else np.zeros(len(thresholds))
        correct_accuracy = hits[:, error_free].mean(axis=1) if error_free.any() else np.zeros(len(thresholds))
        total = error_accuracy + correct_accuracy
        f1 = np.divide(2 * error_accuracy * correct_accuracy, total, out=np.zeros_like(total),
                       where=total > 0)
        top = int(np.argmax(f1))
        if f1[top] > best_f1:
            best_threshold, best_f1 = float(thresholds[top]), float(f1[top])
    return best_threshold, best_f1


def evaluate_split(samples: Sequence[ProcessBenchSample], step_rewards: Sequence[Sequence[float]],
                   threshold: float, aggregation: str = "step") -> ProcessBenchScore:
    """Score one split given each sample's step rewards."""
    predictions = [first_error_step(rewards, threshold, aggregation) for rewards in step_rewards]
    return score_predictions([sample.label for sample in samples], predictions)


def score_steps(sample: ProcessBenchSample, step_scorer: StepScorer) -> list[float]:
    """``step_scorer`` on one sample, checked to give one finite reward per step."""
    rewards = [float(r) for r in step_scorer(sample.problem, sample.steps)]
    if len(rewards) != len(sample.steps):
        raise ValueError(f"sample {sample.id}: the scorer gave {len(rewards)} rewards for "
                         f"{len(sample.steps)} steps")
    return rewards


def implicit_prm_scorer(prm, render_prompt: Callable[[str], str], separator: str = "\n\n"
                        ) -> StepScorer:
    """A step scorer from an implicit PRM: the steps are joined with ``separator`` and scored as
    one response to the rendered problem. A ``separator`` inside a step is collapsed first (to a
    newline, or to a space when the separator is a newline) so steps and rewards stay one to one."""
    inner = " " if separator == "\n" else "\n"

    def scorer(problem: str, steps: Sequence[str]) -> list[float]:
        cleaned = [step.strip().replace(separator, inner) for step in steps]
        return prm.step_rewards([render_prompt(problem)], [separator.join(cleaned)],
                                separator=separator)[0]

    return scorer
