"""Held-out accuracy of the policy during RL, and the training-curve plot.

Training reward is measured on the prompts being trained on and, with filtering, on a selected
subset of them; whether the policy actually got better is a question for problems it never sees.
:class:`HeldOutAccuracy` samples one response per held-out problem at the training temperature
and grades it with the same verifier, at the start, every ``every_steps`` optimizer steps and at
the end. It runs on the main process only and restores the random state afterwards, so
evaluating does not change the training run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from primekit.generation import SamplingSpec, TransformersGenerator
from primekit.rl.verifier import outcome_accuracy

__all__ = ["HeldOutPoint", "HeldOutAccuracy", "plot_training_curve"]


@dataclass(frozen=True)
class HeldOutPoint:
    step: int
    responses_generated: int
    accuracy: float
    num_problems: int

    @property
    def standard_error(self) -> float:
        return math.sqrt(max(self.accuracy * (1 - self.accuracy), 0.0) / self.num_problems)


class HeldOutAccuracy(TrainerCallback):
    """Sample-and-grade accuracy on ``prompts`` / ``answers`` (prompts already rendered to text),
    each row graded by the verifier of its ``tasks`` entry (math or code; None: all math).

    ``responses_per_step`` converts optimizer steps into responses generated, the x axis on which
    PRIME's sample efficiency is compared.
    """

    def __init__(self, prompts: list[str], answers: list[str], tokenizer: Any, *, tasks: list[str] | None = None,
                 temperature: float,
                 max_new_tokens: int, responses_per_step: int, every_steps: int = 0, seed: int = 1234,
                 batch_size: int = 256):
        if len(prompts) != len(answers) or not prompts or (tasks is not None and len(tasks) != len(prompts)):
            raise ValueError("held-out evaluation needs the same, non-zero number of prompts, answers and tasks")
        self.prompts, self.answers, self.tasks = prompts, answers, tasks
        self.tokenizer = tokenizer
        self.spec = SamplingSpec(n=1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        self.responses_per_step = responses_per_step
        self.every_steps = every_steps
        self.batch_size = batch_size
        self.history: list[HeldOutPoint] = []

    def evaluate(self, model: torch.nn.Module, step: int) -> HeldOutPoint:
        was_training = model.training
        model.eval()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            generator = TransformersGenerator(model, self.tokenizer, self.batch_size, show_progress=False)
            completions = [group[0].text for group in generator.generate(self.prompts, self.spec)]
        model.train(was_training)
        accuracy = sum(outcome_accuracy(completions, self.answers, task=self.tasks)) / len(self.answers)
        point = HeldOutPoint(step, step * self.responses_per_step, accuracy, len(self.answers))
        self.history.append(point)
        return point

    def _maybe_evaluate(self, state, model, force: bool) -> None:
        if not state.is_world_process_zero or model is None:
            return
        if self.history and self.history[-1].step == state.global_step:
            return
        if force or (self.every_steps and state.global_step % self.every_steps == 0):
            self.evaluate(model, state.global_step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._maybe_evaluate(state, model, force=True)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._maybe_evaluate(state, model, force=False)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._maybe_evaluate(state, model, force=True)


def plot_training_curve(path: str | Path, history: list[HeldOutPoint], log_history: list[dict[str, Any]],
                        title: str) -> None:
    """PNG: held-out accuracy (with 1-sigma bars) and the training batches' accuracy vs step."""
    import matplotlib  # optional plotting library, loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: loaded only when a plot is drawn

    figure, axis = plt.subplots(figsize=(7, 4.2))
    train = [(entry["step"], entry["rewards/outcome_accuracy/mean"]) for entry in log_history
             if "rewards/outcome_accuracy/mean" in entry]
    if train:
        axis.plot(*zip(*train), color="tab:gray", alpha=0.7, label="training batch accuracy (sampled prompts)")
    if history:
        axis.errorbar([p.step for p in history], [p.accuracy for p in history],
                      yerr=[p.standard_error for p in history], marker="o", color="tab:blue", capsize=3,
                      label=f"held-out accuracy ({history[0].num_problems} problems)")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("accuracy")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(staging, dpi=120)
    plt.close(figure)
    staging.replace(path)
