"""Argument dataclasses shared by the command-line tools.

Each command composes the groups it needs, the way TRL's scripts compose ``ScriptArguments``,
``ModelConfig`` and a trainer config: ``parse_config([ModelArguments, SamplingArguments,
MyCommandArguments], argv, ...)``. A concept therefore has one option name and one help text in
every tool (see the table in the README): ``--model``, ``--n``, ``--temperature``, ``--top_p``,
``--max_new_tokens``, ``--stop``, ``--seed``, ``--bootstrap_resamples``, ``--protocol``.

Old option names stay accepted for one release: a dataclass lists them in its
``deprecated_aliases`` class attribute (old name -> new name) and :func:`primekit.config.parse_config`
rewrites them, on the command line and in YAML recipes, with a warning.

``PRMReadingArguments`` (the implicit PRM read-out: prm, prm_ref, aggregate, step_mode, coef,
prm_context) lives with the rest of the PRM reading code in :mod:`primekit.prm.reading` and is
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from primekit.config import help_text

__all__ = ["BootstrapArguments", "GenerationArguments", "ModelArguments", "PRMReadingArguments",
           "SamplingArguments"]

BACKENDS = ("transformers", "vllm")


@dataclass
class ModelArguments:
    """The policy (generator) a command runs or trains."""

    model: str | None = field(default=None, metadata=help_text(
        "policy: a hub name, a local folder, or 'toy' (default: the toy policy, trained once and "
        "cached)"))


@dataclass
class GenerationArguments:
    """Where and how generation runs; none of these change what a model is asked to do."""

    backend: str = field(default="transformers", metadata=help_text(
        "generation back end: transformers or vllm (pip install primekit[vllm])"))
    dtype: str = field(default="auto", metadata=help_text(
        "model dtype: auto, bfloat16, float16, float32"))
    device: str | None = field(default=None, metadata=help_text(
        "device (default: cuda if available, else cpu; transformers back end)"))
    batch_size: int = field(default=32, metadata=help_text(
        "sequences per generate call (transformers back end)"))

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend '{self.backend}' (choose {' or '.join(BACKENDS)})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


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


def __getattr__(name: str):
    """``PRMReadingArguments`` is imported on first use: it lives in :mod:`primekit.prm.reading`,
    which imports model code that commands without a PRM never need."""
    if name == "PRMReadingArguments":
        from primekit.prm.reading import PRMReadingArguments

        return PRMReadingArguments
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
