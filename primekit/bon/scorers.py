"""Reward models that score Best-of-N candidates, behind one interface.

Every scorer returns *step scores*: one list of floats per candidate (an outcome model returns a
one-element list). Step scores are what the score cache stores, so choosing another aggregation
(min / last / mean / sum) later re-uses them without touching a model.

* :class:`ImplicitPRMScorer`: the implicit PRM of PRIME, ``r_step = beta * sum over the step's tokens
  of log pi_phi - log pi_ref`` (computed by :class:`primekit.prm.implicit.ImplicitPRM`);
* :class:`TokenClassificationPRMScorer`: a discriminative step-label PRM
  (``AutoModelForTokenClassification``), read at the last token of every step, the layout TRL's
  former ``PRMTrainer`` trained (each step followed by its separator);
* :class:`SequenceClassificationORMScorer`: an outcome reward model
  (``AutoModelForSequenceClassification``, e.g. trained with TRL's ``RewardTrainer``);
* :class:`ShippedScores`: scores that came with the data (Qwen's RM scores in the shipped set).

How a response is cut into steps follows EurusPRM's Best-of-N: on "Step k:" markers, else on blank
lines, else on newlines (:func:`step_spans`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from primekit.errors import InputError

AGGREGATIONS = ("min", "last", "mean", "sum")
STEP_MODES = ("auto", "step_markers", "blank_lines", "newlines")

# "Step 3:" at the start of a line, possibly inside Markdown emphasis or a heading ("**Step 3:**").
_STEP_MARKER = re.compile(r"^[ \t#*_]*Step[ \t]*\d+[ \t]*:", re.MULTILINE)

Context = str | list[dict[str, str]]  # verbatim text, or chat messages for the tokenizer's template


# ----------------------------------------------------------------------------------------------
# steps and aggregation (pure)


def _marker_spans(text: str) -> list[tuple[int, int]]:
    """Steps that start at "Step k:" markers (at least two of them); a preamble before the first
    marker belongs to the first step."""
    starts = [match.start() for match in _STEP_MARKER.finditer(text)]
    if len(starts) < 2:
        return []
    bounds = [0, *starts[1:], len(text)]
    return list(zip(bounds, bounds[1:]))


def step_spans(text: str, mode: str = "auto") -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the reasoning steps of ``text``, covering it exactly.

    ``auto`` follows EurusPRM's Best-of-N: "Step k:" markers when there are at least two, else
    blank lines when they give at least two steps, else newlines. Separator splitting is
    :func:`primekit.prm.implicit.step_spans` (a separator closes the step before it).
    """
    from primekit.prm.implicit import step_spans as separator_spans

    if mode not in STEP_MODES:
        raise InputError(f"unknown step mode '{mode}' (choose from {', '.join(STEP_MODES)})")
    if mode in ("auto", "step_markers"):
        spans = _marker_spans(text)
        if spans or mode == "step_markers":
            return spans or [(0, len(text))]
    if mode in ("auto", "blank_lines"):
        spans = separator_spans(text, "\n\n")
        if len(spans) > 1 or mode == "blank_lines":
            return spans
    return separator_spans(text, "\n")


def split_steps(text: str, mode: str = "auto") -> list[str]:
    """The steps of ``text`` (see :func:`step_spans`); ``"".join(split_steps(t)) == t``."""
    return [text[start:end] for start, end in step_spans(text, mode)]


def aggregate_scores(step_scores: Sequence[float], how: str) -> float:
    """One score per response from per-step *scores* (a discriminative PRM's probabilities, an
    ORM's single score): ``min`` (the weakest step), ``last`` (the score after the final step),
    ``mean`` or ``sum``. Implicit step *rewards* aggregate with
    :func:`primekit.prm.implicit.aggregate_steps`, where ``last`` is the final Q value (= sum)."""
    if how not in AGGREGATIONS:
        raise InputError(f"unknown aggregation '{how}' (choose from {', '.join(AGGREGATIONS)})")
    if not step_scores:
        raise ValueError("aggregate_scores: a response has at least one step")
    if how == "min":
        return float(min(step_scores))
    if how == "last":
        return float(step_scores[-1])
    total = math.fsum(step_scores)
    return total / len(step_scores) if how == "mean" else total


def sigmoid(x: float) -> float:
    """The logistic function, without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True)
class VoteWeight:
    """How a candidate's score becomes its weight in a reward-weighted majority vote.

    ``aggregate`` names the aggregation whose value is weighted (None: the one chosen for
    Best-of-N); ``transform`` is ``sigmoid`` for unbounded log-odds-like rewards (the implicit PRM's
    sequence reward, a single-logit ORM) and ``raw`` for scores used as they are (probabilities;
    shipped RM scores, as Qwen's RM@N data gives them).
    """

    aggregate: str | None
    transform: str

    def apply(self, aggregated: float) -> float:
        return sigmoid(aggregated) if self.transform == "sigmoid" else aggregated


def render_context(tokenizer, context: Context) -> str:
    """The text a model reads before a candidate: verbatim text as is; chat messages through the
    tokenizer's chat template (generation prompt included), or joined by newlines when it has none."""
    if isinstance(context, str):
        return context
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
    return "\n".join(message["content"] for message in context)


# ----------------------------------------------------------------------------------------------
# the scorer interface


class StepScorer(Protocol):
    """Anything that gives step scores for (context, response) pairs.

    ``identity()`` returns every setting that changes the scores (model fingerprints, beta, step
    mode, ...); the score cache is keyed by it. ``aggregate`` turns step scores into one ranking
    score and ``vote_weight`` says how that score weights a vote.
    """

    name: str
    vote_weight: VoteWeight

    def identity(self) -> dict[str, Any]: ...

    def aggregate(self, step_scores: Sequence[float], how: str) -> float: ...

    def step_scores(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[list[float]]: ...


def model_fingerprint(name_or_path: str | os.PathLike) -> str:
    """Identifies a model for the score cache: a local directory by its resolved path and the size
    and modification time of its config and weight files (so retraining in place invalidates the
    cache); a hub name by itself."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        return str(name_or_path)
    stats = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in path.iterdir()
                   if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".pt"})
    digest = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    return f"{path.resolve()}@{digest}"


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _right_padded(rows: Sequence[Sequence[int]], pad_id: int):
    """``input_ids`` and ``attention_mask`` of right-padded rows: every real token keeps its
    unpadded position, so the score read at a position does not depend on the batch."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, :len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[index, :len(row)] = 1
    return ids, mask


# ----------------------------------------------------------------------------------------------
# scorers


class _OnFirstUse:
    """A model bundle built on first use: a scorer whose scores are all cached never loads its
    weights."""

    def __init__(self, load: Callable[[], Any]):
        self._load, self._value = load, None

    def get(self) -> Any:
        if self._value is None:
            self._value = self._load()
        return self._value


class ImplicitPRMScorer:
    """PRIME's implicit PRM, read through :class:`primekit.prm.implicit.ImplicitPRM`.

    Token rewards ``r_t = beta * (log pi_phi - log pi_ref)`` are summed over the steps of
    :func:`step_spans` (so "Step k:" solutions are cut at their markers). Ranking aggregates with
    the implicit PRM's own :func:`~primekit.prm.implicit.aggregate_steps`. Votes are weighted by
    ``sigmoid(sequence reward)``, the PRM's estimate of P(correct) under its cross-entropy objective.
    ``load`` returns the ``ImplicitPRM``; ``identity`` must name everything that changes its scores.
    """

    vote_weight = VoteWeight(aggregate="sum", transform="sigmoid")

    def __init__(self, load: Callable[[], Any], identity: dict[str, Any], step_mode: str = "auto",
                 name: str = "implicit_prm"):
        self._prm, self.step_mode, self.name = _OnFirstUse(load), step_mode, name
        self._identity = {"kind": "implicit_prm", "step_mode": step_mode, **identity}

    @classmethod
    def from_pretrained(cls, prm_path: str, ref_path: str | None = None, beta: float | None = None,
                        step_mode: str = "auto", dtype: str = "auto", device: str | None = None,
                        batch_size: int = 16) -> "ImplicitPRMScorer":
        """A scorer for a saved PRM; ``beta=None`` means the PRM's recorded beta (its record file
        is part of the fingerprint)."""
        def load():
            from primekit.prm.implicit import ImplicitPRM

            return ImplicitPRM.from_pretrained(prm_path, ref_path=ref_path, beta=beta, dtype=dtype,
                                               device=device, batch_size=batch_size)

        identity = {"prm": model_fingerprint(prm_path), "beta": beta, "dtype": dtype,
                    "ref": None if ref_path is None else model_fingerprint(ref_path)}
        return cls(load, identity, step_mode=step_mode)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def aggregate(self, step_scores: Sequence[float], how: str) -> float:
        from primekit.prm.implicit import aggregate_steps

        if how not in AGGREGATIONS:
            raise InputError(f"unknown aggregation '{how}' (choose from {', '.join(AGGREGATIONS)})")
        return aggregate_steps(step_scores, how)

    def step_scores(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[list[float]]:
        from primekit.prm.data import encode_response
        from primekit.prm.implicit import sum_by_step, token_steps

        prm = self._prm.get()
        texts = [render_context(prm.tokenizer, context) for context in contexts]
        results = []
        for text, response, rewards in zip(texts, responses, prm.token_rewards(texts, responses),
                                           strict=True):
            offsets = encode_response(prm.tokenizer, text, response, append_eos=prm.append_eos).offsets
            spans = step_spans(response, self.step_mode)
            results.append(sum_by_step(rewards.tolist(), token_steps(offsets, spans), len(spans)))
        return results


def _load_classifier(auto_class, path: str, dtype: str, device: str | None):
    from primekit.models import load_tokenizer, torch_dtype

    try:
        model = auto_class.from_pretrained(path, dtype=torch_dtype(dtype))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load a {auto_class.__name__} model: {str(err).splitlines()[0]}",
                         path=path) from None
    model.eval().requires_grad_(False)
    return (model.to(device) if device else model), load_tokenizer(path)


def _num_labels(path: str) -> int:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path).num_labels
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the model config: {str(err).splitlines()[0]}", path=path) from None


def _check_label(label: int, num_labels: int) -> None:
    if not 0 <= label < num_labels:
        raise InputError(f"label {label} is not one of the model's {num_labels} labels")


class TokenClassificationPRMScorer:
    """A discriminative PRM: a token-classification head read at the last token of every step.

    The input is the context followed by each step tokenised on its own, every step ending with
    ``separator`` (appended to the last step when it lacks one), the layout TRL's former
    ``PRMTrainer`` trained on; a step's score is the softmax probability of ``positive_label`` at
    its last (separator) token. ``load`` returns ``(model, tokenizer)``.
    """

    vote_weight = VoteWeight(aggregate=None, transform="raw")

    def __init__(self, load: Callable[[], tuple[Any, Any]], identity: dict[str, Any],
                 step_mode: str = "auto", separator: str = "\n", positive_label: int = 1,
                 batch_size: int = 8, name: str = "step_prm"):
        self._bundle = _OnFirstUse(load)
        self.step_mode, self.separator = step_mode, separator
        self.positive_label, self.batch_size, self.name = positive_label, batch_size, name
        self._identity = {"kind": "token_classification_prm", "step_mode": step_mode,
                          "separator": separator, "positive_label": positive_label, **identity}

    @classmethod
    def from_pretrained(cls, path: str, dtype: str = "auto", device: str | None = None,
                        positive_label: int = 1, **kwargs) -> "TokenClassificationPRMScorer":
        from transformers import AutoModelForTokenClassification

        _check_label(positive_label, _num_labels(path))
        return cls(lambda: _load_classifier(AutoModelForTokenClassification, path, dtype, device),
                   {"model": model_fingerprint(path), "dtype": dtype},
                   positive_label=positive_label, **kwargs)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def aggregate(self, step_scores: Sequence[float], how: str) -> float:
        return aggregate_scores(step_scores, how)

    def _row(self, tokenizer, context: Context, response: str) -> tuple[list[int], list[int]]:
        """Token ids of one input and the position of each step's last token."""
        def encode(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        ids = encode(render_context(tokenizer, context))
        positions = []
        steps = split_steps(response, self.step_mode)
        for index, step in enumerate(steps):
            if index == len(steps) - 1 and not step.endswith(self.separator):
                step += self.separator
            ids += encode(step)
            positions.append(len(ids) - 1)
        return ids, positions

    def step_scores(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[list[float]]:
        import torch

        model, tokenizer = self._bundle.get()
        _check_label(self.positive_label, model.config.num_labels)
        device = next(model.parameters()).device
        results: list[list[float]] = []
        for start in range(0, len(responses), self.batch_size):
            rows = [self._row(tokenizer, c, r) for c, r in zip(
                contexts[start:start + self.batch_size], responses[start:start + self.batch_size])]
            ids, mask = _right_padded([ids for ids, _ in rows], _pad_id(tokenizer))
            with torch.no_grad():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            probs = logits.float().softmax(-1)[..., self.positive_label].cpu()
            results += [[float(probs[row, p]) for p in positions]
                        for row, (_, positions) in enumerate(rows)]
        return results


class SequenceClassificationORMScorer:
    """An outcome reward model: one score per response, read at its last token.

    With one output (``num_labels == 1``, TRL's ``RewardTrainer`` convention) the score is that
    logit and a vote is weighted by its sigmoid; with several labels the score is the softmax
    probability of ``positive_label``, used as the vote weight directly. ``load`` returns
    ``(model, tokenizer)``.
    """

    def __init__(self, load: Callable[[], tuple[Any, Any]], identity: dict[str, Any],
                 num_labels: int, positive_label: int = 1, batch_size: int = 8, name: str = "orm"):
        self.single_logit = num_labels == 1
        if not self.single_logit:
            _check_label(positive_label, num_labels)
        self._bundle = _OnFirstUse(load)
        self.positive_label, self.batch_size, self.name = positive_label, batch_size, name
        self.vote_weight = VoteWeight("last", "sigmoid" if self.single_logit else "raw")
        self._identity = {"kind": "sequence_classification_orm", "num_labels": num_labels,
                          "positive_label": None if self.single_logit else positive_label,
                          **identity}

    @classmethod
    def from_pretrained(cls, path: str, dtype: str = "auto", device: str | None = None,
                        **kwargs) -> "SequenceClassificationORMScorer":
        from transformers import AutoModelForSequenceClassification

        return cls(lambda: _load_classifier(AutoModelForSequenceClassification, path, dtype, device),
                   {"model": model_fingerprint(path), "dtype": dtype}, _num_labels(path), **kwargs)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def aggregate(self, step_scores: Sequence[float], how: str) -> float:
        return aggregate_scores(step_scores, how)

    def step_scores(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[list[float]]:
        import torch

        model, tokenizer = self._bundle.get()
        if model.config.pad_token_id is None:
            # the head pools at the last non-pad token of each row, so it must know the pad id
            model.config.pad_token_id = _pad_id(tokenizer)
        device = next(model.parameters()).device
        results: list[list[float]] = []
        for start in range(0, len(responses), self.batch_size):
            rows = [tokenizer(render_context(tokenizer, c) + r, add_special_tokens=False)["input_ids"]
                    for c, r in zip(contexts[start:start + self.batch_size],
                                    responses[start:start + self.batch_size])]
            ids, mask = _right_padded(rows, int(model.config.pad_token_id))
            with torch.no_grad():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logits = logits.float().cpu()
            values = logits[:, 0] if self.single_logit else logits.softmax(-1)[:, self.positive_label]
            results += [[float(value)] for value in values]
        return results


class ShippedScores:
    """Scores that came with the candidates file (``scores``, or Qwen's ``pred_score``).

    They need no model and no cache. They rank as they are (Qwen's RM@N script takes the argmax)
    and weight votes as they are (``raw``); note that a negative raw score *lowers* its answer's
    total, so among low-scored candidates a raw-weighted vote favours answers with fewer of them.
    """

    name = "shipped"
    vote_weight = VoteWeight(aggregate="last", transform="raw")

    def identity(self) -> dict[str, Any]:
        return {"kind": "shipped"}

    def aggregate(self, step_scores: Sequence[float], how: str) -> float:
        return aggregate_scores(step_scores, "last")

    def precomputed(self, problem) -> list[list[float]]:
        """The one-step "step scores" of a :class:`~primekit.bon.data.BonProblem`."""
        if problem.scores is None:
            raise InputError("the shipped scorer needs candidate scores ('scores', or Qwen's "
                             "'pred_score') and this problem has none", field="scores")
        return [[score] for score in problem.scores]

