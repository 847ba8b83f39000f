"""ProcessBench: can a process reward model find the first wrong step of a solution?

Each sample is a problem, a solution split into steps, and ``label``: the 0-based index of the
first erroneous step, or -1 when every step is right. A PRM gives one reward per step; the
predicted first error is the first step whose running implicit Q value, the sum of the step
rewards so far (``aggregate="min_q"``, the default, as ImplicitPRM's ProcessBench script reads
EurusPRM), or whose own reward (``min_step``) falls below a threshold. The threshold is tuned on
the GSM8K split and then applied to every split (the published protocol). The score of a split is
the harmonic mean (F1) of the accuracy on erroneous samples (the exact step must be found) and the
accuracy on error-free samples (no step may be flagged).

An implicit PRM reads the labelled steps as ImplicitPRM's script builds them
(``eval/processbench.py:219``, ``:134-160``): ``Step i: `` before each step, the steps joined by a
blank line, the problem as a user message through the PRM's chat template; the known steps are
never re-split (:func:`primekit.prm.reading.join_steps`). The rewards are scaled by the PRM's
recorded coefficient (EurusPRM: 0.001) unless ``--coef`` says otherwise. Step rewards may also
come from any ``step_scorer(problem, steps) -> list[float]``; tests use hand-made scorers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from primekit.arguments import LoadArguments, PRMReadingArguments
from primekit.config import help_text, parse_config
from primekit.errors import InputError
from primekit.io import ResumableJsonl, atomic_write_json, read_json_or_jsonl, require_field
from primekit.paths import data_dir
from primekit.prm.reading import THRESHOLD_AGGREGATES, Prompt, Query, join_steps, prm_prompt, threshold_series
from primekit.prm.settings import resolve_reading
from primekit.prompts import check_template, render_text
from primekit.sampling import check_settings

SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")
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


def first_error_step(step_rewards: Sequence[float], threshold: float, aggregate: str = "min_q") -> int:
    """Index of the first step whose value (its Q for ``min_q``, its reward for ``min_step``) is
    below ``threshold``, or -1."""
    return next((index for index, value in enumerate(threshold_series(step_rewards, aggregate))
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
                   aggregate: str = "min_q", chunk: int = 256) -> tuple[float, float]:
    """The threshold with the best F1 on these samples, and that F1.

    Predictions only change when the threshold crosses one of the observed values, so the
    candidates are the midpoints between consecutive distinct values plus one value below and one
    above them all (an exact search; ImplicitPRM's script scans 10,000 thresholds of sigmoid(Q),
    a monotone map of the same values); ties go to the smallest threshold.
    """
    if not step_rewards:
        raise ValueError("no samples to tune a threshold on")
    rows = [threshold_series(r, aggregate) for r in step_rewards]
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
                   threshold: float, aggregate: str = "min_q") -> ProcessBenchScore:
    """Score one split given each sample's step rewards."""
    predictions = [first_error_step(rewards, threshold, aggregate) for rewards in step_rewards]
    return score_predictions([sample.label for sample in samples], predictions)


def score_steps(sample: ProcessBenchSample, step_scorer: StepScorer) -> list[float]:
    """``step_scorer`` on one sample, checked to give one finite reward per step."""
    rewards = [float(r) for r in step_scorer(sample.problem, sample.steps)]
    if len(rewards) != len(sample.steps):
        raise ValueError(f"sample {sample.id}: the scorer gave {len(rewards)} rewards for "
                         f"{len(sample.steps)} steps")
    return rewards


def implicit_prm_step_rewards(prm, prompts: Sequence[Prompt], samples: Sequence[ProcessBenchSample]
                              ) -> list[list[float]]:
    """Step rewards of labelled solutions from an :class:`~primekit.prm.implicit.ImplicitPRM`,
    one per labelled step: the steps are numbered and joined as ImplicitPRM's script does and read
    with their known spans."""
    return [result.step_rewards for result in prm.read(prompts, [join_steps(s.steps) for s in samples])]


# ----------------------------------------------------------------------------------------------
# the command: prime-eval processbench


@dataclass
class ProcessBenchArguments:
    """Options of ``prime-eval processbench`` besides the implicit PRM's reading options
    (``--prm`` is required, ``--aggregate`` ``min_q`` or ``min_step``) and how it is loaded."""

    splits: str | None = field(default=None, metadata=help_text(
        "comma-separated ProcessBench splits to report (default: every split in the data folder "
        "among gsm8k, math, olympiadbench, omnimath)"))
    tune_split: str = field(default="gsm8k", metadata=help_text(
        "split the threshold is tuned on (ProcessBench practice: GSM8K)"))
    threshold: float | None = field(default=None, metadata=help_text(
        "use this threshold instead of tuning one"))
    template: str = field(default="raw", metadata=help_text(
        "with --prm_context prompt: the policy template that renders the problem (raw, "
        "qwen25-math-cot or eurus); with chat the PRM's own chat template renders it"))
    limit: int | None = field(default=None, metadata=help_text(
        "quick runs: per split, the first N/2 erroneous and N/2 error-free samples"))
    out: str | None = field(default=None, metadata=help_text(
        "folder for step_rewards.jsonl (resumable) and processbench.json (required)"))

    def __post_init__(self) -> None:
        if self.out is None:
            raise ValueError("--prm and --out are required")
        if check_template(self.template) == "auto":
            raise ValueError("choose an explicit --template for ProcessBench")


# solutions per PRM forward pass (ProcessBench solutions are long)
PROCESSBENCH_DEFAULTS = {"batch_size": 8}


def _check_reading(reading: PRMReadingArguments) -> None:
    """ProcessBench needs a PRM and one aggregate that a threshold can be tuned on."""
    if reading.prm is None:
        raise InputError("--prm and --out are required")
    if len(reading.aggregates) != 1 or reading.aggregate not in THRESHOLD_AGGREGATES:
        raise InputError(f"aggregate must be one of {', '.join(THRESHOLD_AGGREGATES)}, got "
                         f"'{reading.aggregate}'", field="aggregate")


def command(argv: list[str]) -> int:
    """First-error-step F1 of an implicit PRM on ProcessBench."""

    args, reading, load, *_ = parse_config([ProcessBenchArguments, PRMReadingArguments, LoadArguments], argv,
                                       prog="prime-eval processbench", description=command.__doc__,
                                       defaults=PROCESSBENCH_DEFAULTS)
    _check_reading(reading)
    settings = resolve_reading(reading)
    splits = [s.strip() for s in (args.splits or "").split(",") if s.strip()] or available_splits()
    tune = [] if args.threshold is not None else [args.tune_split]
    data = {split: load_split(split, args.limit) for split in dict.fromkeys(tune + splits)}
    out = Path(args.out)
    check_settings(out, {"reading": asdict(settings), "template": args.template})
    cache = ResumableJsonl(out / "step_rewards.jsonl", key=lambda r: f"{r['split']}/{r['id']}")
    pending = [s for samples in data.values() for s in samples if f"{s.split}/{s.id}" not in cache.done]
    if pending:
        from primekit.prm.implicit import ImplicitPRM  # loads torch and transformers; only to score

        prm = ImplicitPRM.from_settings(settings, dtype=load.dtype, device=load.device,
                                        batch_size=load.batch_size)
        prompt_for = _prompt_renderer(settings.prm_context, args.template, prm.tokenizer)
        with tqdm(total=len(pending), desc="score steps", unit="sample") as bar:
            for start in range(0, len(pending), 4 * load.batch_size):
                chunk = pending[start:start + 4 * load.batch_size]
                rewards = implicit_prm_step_rewards(prm, [prompt_for(s.problem) for s in chunk], chunk)
                for sample, step_rewards in zip(chunk, rewards):
                    cache.append({"split": sample.split, "id": sample.id, "step_rewards": step_rewards})
                bar.update(len(chunk))
    rewards = {split: [cache.records[f"{split}/{s.id}"]["step_rewards"] for s in samples]
               for split, samples in data.items()}
    threshold, tuned_f1 = args.threshold, None
    if threshold is None:
        threshold, tuned_f1 = tune_threshold(
            rewards[args.tune_split], [s.label for s in data[args.tune_split]], reading.aggregate)
    report: dict[str, Any] = {
        "prm": settings.prm, "prm_ref": settings.prm_ref, "coef": settings.coef,
        "prm_context": settings.prm_context, "aggregate": reading.aggregate, "threshold": threshold,
        "tuned_on": None if tune == [] else args.tune_split, "tuned_f1": tuned_f1, "splits": {}}
    for split in splits:
        report["splits"][split] = asdict(evaluate_split(data[split], rewards[split], threshold, reading.aggregate))
    atomic_write_json(out / "processbench.json", report)
    _print_report(report)
    return 0


def _prompt_renderer(prm_context: str, template: str, tokenizer) -> Callable[[str], Prompt]:
    """What the PRM reads before a solution: the problem through the PRM's chat template
    (``chat``), or the problem rendered by a policy ``template`` (``prompt``)."""
    if prm_context == "chat":
        return lambda problem: prm_prompt(Query(problem), "chat")
    return lambda problem: prm_prompt(Query(problem, render_text(problem, template, tokenizer)), "prompt")


def _print_report(report: dict[str, Any]) -> None:

    table = Table(title=f"ProcessBench: {report['prm']} ({report['aggregate']}, coef {report['coef']:g}, "
                        f"threshold {report['threshold']:.4g})")
    for column in ["split", "erroneous", "error-free", "error acc %", "correct acc %", "F1 %"]:
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, score in report["splits"].items():
        table.add_row(split, str(score["num_error"]), str(score["num_correct"]),
                      *("–" if score[key] is None else f"{100 * score[key]:.1f}"
                        for key in ("error_accuracy", "correct_accuracy", "f1")))
    Console().print(table)
