"""What a PRIME run reports: its own step metrics beside TRL's, and one compact console line per
logged step.

Every metric goes, as TRL logs it, to ``report_to`` and to the trainer state's ``log_history``
(``trainer_state.json`` in each checkpoint, and in the output folder after ``prime-rl train``); the
console gets only what a person watches while a run trains: ``step 12/60 | acc 0.43 | prm acc 0.55 | prm pairwise 0.61 | loss 0.012 | len 34 | 1.6 s/step``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch
from transformers import PrinterCallback, ProgressCallback
from transformers.trainer import DEFAULT_PROGRESS_CALLBACK

from primekit.prm.losses import pairwise_accuracy, reward_accuracy
from primekit.rl.filtering import GroupSelection

__all__ = ["ProgressLineCallback", "append_step_metrics", "install_progress_line", "process_reward_stats",
           "progress_line", "prm_accuracy"]

#: (label, logged key, format) of the compact line's fields, in order; a field the logs lack is left out.
LINE_FIELDS = (
    ("acc", "reward", ".2f"),                      # outcome accuracy of the sampled responses (one 0/1 verifier)
    ("prm acc", "prm/accuracy", ".2f"),
    ("prm pairwise", "prm/pairwise_accuracy", ".2f"),
    ("loss", "loss", ".4g"),
    ("kl", "kl", ".3g"),
    ("len", "completions/mean_length", ".0f"),
)


def prm_accuracy(predicted: torch.Tensor, acc: torch.Tensor, weights: torch.Tensor,
                 group_size: int) -> dict[str, float]:
    """How well the PRM's sequence rewards predicted the outcomes of the trained rows, before it
    learned from them: sign accuracy, and ranking accuracy within each prompt's group."""
    trained = weights > 0
    if not trained.any():
        return {}
    return {"prm/accuracy": float(reward_accuracy(predicted[trained], acc[trained])),
            "prm/pairwise_accuracy": float(pairwise_accuracy(predicted[trained], acc[trained], group_size)),
            "prm/sequence_reward_mean": float(predicted[trained].mean())}


def process_reward_stats(rewards: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean and standard deviation of the normalised process rewards on the trained tokens."""
    values = rewards[mask.bool()]
    if values.numel() < 2:
        return {}
    return {"prime/process_reward_mean": float(values.mean()), "prime/process_reward_std": float(values.std())}


def append_step_metrics(metrics: Mapping[str, list[float]], selection: GroupSelection, acc: torch.Tensor,
                        weights: torch.Tensor, prm_metrics: Mapping[str, float], timings: Mapping[str, float],
                        rounds: int) -> None:
    """Add one PRIME step's own metrics to TRL's per-step lists (``trainer._metrics["train"]``), which
    TRL averages over the logging interval: generation rounds, the filter's fractions, the trained
    rows' accuracy and share, the PRM's metrics and the phases' wall times."""
    metrics["prime/generation_rounds"].append(float(rounds))
    for key, value in selection.stats.as_metrics(prefix="prime/filter/").items():
        metrics[key].append(value)
    trained = weights > 0
    metrics["prime/trained_accuracy"].append(float(acc[trained].mean()) if trained.any() else float("nan"))
    metrics["prime/trained_fraction"].append(float(trained.float().mean()))
    for key, value in prm_metrics.items():
        metrics[key].append(value)
    for phase, seconds in timings.items():
        metrics[f"time/{phase}"].append(seconds)


def _value(logs: Mapping[str, Any], key: str) -> float | None:
    value = logs.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def progress_line(logs: Mapping[str, Any], step: int, max_steps: int, seconds_per_step: float | None) -> str | None:
    """The console line of one ``Trainer.log`` call: a training step's accuracy, PRM accuracy, loss
    and step time; the closing summary (``train_runtime``); an evaluation; None for anything else."""
    if "train_runtime" in logs:
        loss = _value(logs, "train_loss")
        summary = f"trained {step} steps in {logs['train_runtime']:.0f} s"
        return summary if loss is None else f"{summary} | loss {loss:.4g}"
    evaluation = any(key.startswith("eval_") for key in logs)
    prefix = "eval_" if evaluation else ""
    parts = [f"{label} {value:{form}}" for label, key, form in LINE_FIELDS
             if (value := _value(logs, prefix + key)) is not None]
    if not parts:
        return None
    if evaluation:
        return " | ".join([f"eval at step {step}", *parts])
    if seconds_per_step is not None:
        parts.append(f"{seconds_per_step:.1f} s/step")
    return " | ".join([f"step {step}/{max_steps}", *parts])


class ProgressLineCallback(ProgressCallback):
    """transformers' progress callback (the tqdm bar, unless ``disable_tqdm``) whose ``on_log`` prints
    :func:`progress_line` instead of the raw metric dict; ``log_history`` and ``report_to`` are
    untouched (they are written before and beside the callbacks)."""

    def __init__(self, show_bar: bool = True):
        super().__init__()
        self.show_bar = show_bar
        self._last: tuple[float, int] | None = None  # (time, global step) of the previous training log

    def on_train_begin(self, args, state, control, **kwargs):
        if self.show_bar:
            super().on_train_begin(args, state, control, **kwargs)
        self._last = (time.perf_counter(), state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        seconds = None
        if self._last is not None and state.global_step > self._last[1] and "train_runtime" not in logs:
            now = time.perf_counter()
            seconds = (now - self._last[0]) / (state.global_step - self._last[1])
            self._last = (now, state.global_step)
        line = progress_line(logs, state.global_step, state.max_steps, seconds)
        if line is not None:
            (self.training_bar.write if self.training_bar is not None else print)(line)


def install_progress_line(trainer: Any) -> None:
    """Replace the trainer's default console logger (transformers' progress bar, or its printer
    under ``disable_tqdm``, each of which prints every log as a dict) by :class:`ProgressLineCallback`."""
    for default in (PrinterCallback, ProgressCallback, DEFAULT_PROGRESS_CALLBACK):
        trainer.remove_callback(default)
    trainer.add_callback(ProgressLineCallback(show_bar=not trainer.args.disable_tqdm))
