"""Argument dataclasses shared by the command-line tools.

Each command composes the groups it needs, the way TRL's scripts compose ``ScriptArguments``,
``ModelConfig`` and a trainer config: ``parse_config([ModelArguments, LoadArguments,
MyCommandArguments], argv, ...)``. A concept therefore has one option name and one help text in
every tool (see the table in the README): ``--model``; ``--dtype``, ``--device``, ``--batch_size``
(how a model is loaded and run); ``--backend`` (where generation runs); ``--n``,
``--temperature``, ``--top_p``, ``--max_new_tokens``, ``--stop``, ``--seed``;
``--bootstrap_resamples``; and the implicit PRM's reading options (``--prm``, ``--prm_ref``,
``--aggregate``, ``--step_mode``, ``--coef``, ``--prm_context``, ``--read_out``). A command whose
sensible default differs (a PRM scores 16 responses per forward pass where a generator runs 32)
passes it to :func:`~primekit.config.parse_config` as ``defaults``, so ``--help`` shows it.

Old option names stay accepted for one release: a dataclass lists them in its
``deprecated_aliases`` class attribute (old name -> new name) and :func:`primekit.config.parse_config`
rewrites them, on the command line and in YAML recipes, with a warning.

This module checks option values only; turning the PRM reading options into the settings a reader
uses (with the PRM's record) is :func:`primekit.prm.settings.resolve_reading`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from primekit.config import help_text
from primekit.errors import InputError

__all__ = ["AGGREGATES", "PRM_CONTEXTS", "READ_OUTS", "STEP_MODES", "BootstrapArguments",
           "GenerationArguments", "LoadArguments", "ModelArguments", "PRMReadingArguments",
           "SamplingArguments", "canonical_aggregate", "check_coef", "check_prm_context",
           "check_read_out", "check_step_mode"]

BACKENDS = ("transformers", "vllm")

# The implicit PRM's reading conventions by name (what each does: primekit.prm.reading).
STEP_MODES: tuple[str, ...] = ("newline", "double_newline", "eurus", "auto")
READ_OUTS: tuple[str, ...] = ("steps", "card")
AGGREGATES: tuple[str, ...] = ("min_step", "min_q", "last", "mean", "sum_q")
# Old names kept for one release: "min" was the minimum step increment, "sum" the sequence reward;
# ProcessBench called its two read-outs "step" and "q".
DEPRECATED_AGGREGATES = {"min": "min_step", "sum": "last", "step": "min_step", "q": "min_q"}
PRM_CONTEXTS: tuple[str, ...] = ("chat", "prompt")


@dataclass
class ModelArguments:
    """The policy (generator) a command runs or trains."""

    model: str | None = field(default=None, metadata=help_text(
        "policy: a hub name, a local folder, or 'toy' (default: the toy policy, trained once and "
        "cached)"))


@dataclass
class LoadArguments:
    """How a model is loaded and run: its dtype, its device and how many sequences go through it
    at once. None of these change what a model computes beyond rounding."""

    dtype: str = field(default="auto", metadata=help_text(
        "model dtype: auto (the checkpoint's), bfloat16, float16, float32"))
    device: str | None = field(default=None, metadata=help_text(
        "device (default: cuda if available, else cpu; with vllm, vLLM places the model)"))
    batch_size: int = field(default=32, metadata=help_text(
        "sequences per forward pass or generate call (transformers back end)"))

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class GenerationArguments:
    """Where generation runs; it does not change what a model is asked to do."""

    backend: str = field(default="transformers", metadata=help_text(
        "generation back end: transformers or vllm (pip install primekit[vllm])"))

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend '{self.backend}' (choose {' or '.join(BACKENDS)})")


@dataclass
class SamplingArguments:
    """What is sampled. ``None`` leaves a setting to the evaluation protocol (per benchmark)."""

    n: int | None = field(default=None, metadata=help_text(
        "samples per problem (default: the protocol's, 1 for every published protocol)"))
    temperature: float | None = field(default=None, metadata=help_text(
        "sampling temperature; 0 = greedy (default: the protocol's, 0)"))
    top_p: float | None = field(default=None, metadata=help_text(
        "nucleus sampling top-p (default: the protocol's, 1)"))
    max_new_tokens: int | None = field(default=None, metadata=help_text(
        "generation budget in tokens (default: the protocol's budget for each benchmark)"))
    stop: list[str] | None = field(default=None, metadata=help_text(
        "stop strings, cut from the output (default: the protocol's; in YAML a list, on the "
        "command line one argument each, e.g. --stop $'\\n\\nProblem:')"))
    seed: int = field(default=0, metadata=help_text("sampling seed"))

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.stop is not None and not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop must be a list of non-empty strings")

    def overrides(self) -> dict[str, object]:
        """The settings given explicitly (not left to the protocol)."""
        given = {"n": self.n, "temperature": self.temperature, "top_p": self.top_p,
                 "max_new_tokens": self.max_new_tokens,
                 "stop": None if self.stop is None else tuple(self.stop)}
        return {key: value for key, value in given.items() if value is not None}


@dataclass
class BootstrapArguments:
    """Confidence intervals over problems."""

    deprecated_aliases: ClassVar[dict[str, str]] = {"bootstrap": "bootstrap_resamples"}

    bootstrap_resamples: int = field(default=1000, metadata=help_text(
        "bootstrap resamples for the confidence intervals"))
    confidence: float = field(default=0.95, metadata=help_text(
        "confidence level of the intervals over problems"))

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be >= 1, got {self.bootstrap_resamples}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")


# ---------------------------------------------------------------------------------------------
# the implicit PRM's reading options


def _check_choice(value: str, choices: Sequence[str], what: str, field_name: str) -> str:
    if value not in choices:
        raise InputError(f"unknown {what} '{value}' (choose from {', '.join(choices)})", field=field_name)
    return value


def check_step_mode(mode: str) -> str:
    return _check_choice(mode, STEP_MODES, "step mode", "step_mode")


def check_prm_context(value: str) -> str:
    return _check_choice(value, PRM_CONTEXTS, "prm_context", "prm_context")


def check_read_out(value: str) -> str:
    return _check_choice(value, READ_OUTS, "read_out", "read_out")


def check_coef(coef: float, name: str = "coef") -> float:
    """A reward scale must be a positive finite number (a zero or negative one flips or erases
    every ranking)."""
    if not (isinstance(coef, (int, float)) and math.isfinite(coef) and coef > 0):
        raise InputError(f"{name} must be a positive number, got {coef!r}", field=name)
    return float(coef)


def canonical_aggregate(name: str) -> str:
    """The current name of an aggregate; an old name works with a deprecation warning, an unknown
    one is an :class:`InputError`."""
    if name in DEPRECATED_AGGREGATES:
        new = DEPRECATED_AGGREGATES[name]
        warnings.warn(f"aggregate '{name}' is deprecated and will be removed; use '{new}' (same "
                      "values)", FutureWarning, stacklevel=2)
        return new
    return _check_choice(name, AGGREGATES, "aggregate", "aggregate")


@dataclass
class PRMReadingArguments:
    """How an implicit PRM is read: the options ``prime-prm score``, ``prime-bon rerank``,
    ``prime-eval run --prm``, ``prime-eval processbench`` and ``prime-rl diagnose`` share. Unset
    options come from the PRM's ``implicit_prm.json`` (or a published PRM's card,
    :data:`primekit.prm.reading.KNOWN_PRMS`) when :func:`primekit.prm.settings.resolve_reading`
    turns them into a reader's settings. Old option names are still accepted for one release
    (:func:`primekit.config.parse_config` rewrites them with a warning)."""

    deprecated_aliases: ClassVar[dict[str, str]] = {
        "ref": "prm_ref", "prm_ref_model_name_or_path": "prm_ref", "beta": "coef", "steps": "step_mode",
        "bon_aggregate": "aggregate", "aggregation": "aggregate"}

    prm: str | None = field(default=None, metadata=help_text(
        "implicit PRM: hub name (e.g. PRIME-RL/EurusPRM-Stage1), local folder, LoRA adapter folder, "
        "or 'toy'"))
    prm_ref: str | None = field(default=None, metadata=help_text(
        "the PRM's reference model; default: the one recorded with the PRM (for EurusPRM-Stage1: "
        "Qwen/Qwen2.5-Math-7B-Instruct, as on its card), or a LoRA PRM's base"))
    aggregate: str = field(default="min_q", metadata=help_text(
        "how step rewards rank a response: min_q (min over steps of the running Q, EurusPRM "
        "Stage 1), min_step (weakest step reward), last (= sequence reward), mean, sum_q (sum of "
        "the Q values); old names min (= min_step) and sum (= last) still work; Best-of-N takes a "
        "comma list"))
    step_mode: str | None = field(default=None, metadata=help_text(
        "how a response is cut into steps: newline, double_newline, eurus (ImplicitPRM's: split on "
        "'Step k:', re-number, join with blank lines), auto (line-start 'Step k:' markers, else "
        "blank lines, else newlines); default: the PRM's recorded mode, else auto"))
    coef: float | None = field(default=None, metadata=help_text(
        "inference coefficient: r = coef * log(pi_prm / pi_ref); default: the recorded one (a "
        "trained PRM: its beta; EurusPRM: 0.001 as on its card), else 0.05"))
    prm_context: str = field(default="chat", metadata=help_text(
        "what the PRM reads before a response: chat (the problem as a user message through the "
        "PRM's chat template, as EurusPRM's card does) or prompt (the policy's prompt verbatim)"))
    read_out: str | None = field(default=None, metadata=help_text(
        "where Q_k is read: steps (at the end of step k, its blank line included) or card "
        "(ImplicitPRM's evaluation token for token: from the last prompt token on, one token into "
        "the next step; needs prm_context chat and blank-line steps); default: the PRM's recorded "
        "read-out (EurusPRM-Stage1: card), else steps"))

    def __post_init__(self) -> None:
        self.aggregates = [canonical_aggregate(name.strip())
                           for name in self.aggregate.split(",") if name.strip()]
        if not self.aggregates:
            raise InputError("give at least one aggregate", field="aggregate")
        self.aggregate = ",".join(self.aggregates)
        if self.step_mode is not None:
            check_step_mode(self.step_mode)
        if self.coef is not None:
            check_coef(self.coef)
        check_prm_context(self.prm_context)
        if self.read_out is not None:
            check_read_out(self.read_out)
