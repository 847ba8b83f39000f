"""Reward models that score Best-of-N candidates, behind one interface.

Every scorer returns *step scores*: one list of floats per candidate (an outcome model returns a
one-element list). Step scores are what the score cache stores, so choosing another aggregation
later re-uses them without touching a model. How steps are cut, aggregated and what a model reads
before a candidate is decided in :mod:`primekit.prm.reading`.

* :class:`ImplicitPRMScorer`: the implicit PRM of PRIME / EurusPRM, step rewards
  ``r_k = coef * sum over the step's tokens of (log pi_phi - log pi_ref)`` (computed by
  :class:`primekit.prm.implicit.ImplicitPRM`), ranked by ``min_q`` (EurusPRM Stage 1),
  ``min_step``, ``last``, ``mean`` or ``sum_q``;
* :class:`TokenClassificationPRMScorer`: a discriminative step-label PRM
  (``AutoModelForTokenClassification``) fed the layout TRL's ``PRMTrainer`` trained it on
  (:func:`trl_prm_input`);
* :class:`SequenceClassificationORMScorer`: an outcome reward model
  (``AutoModelForSequenceClassification``) fed the layout TRL's ``RewardTrainer`` trains on
  (:func:`trl_reward_input`);
* :class:`ShippedScores`: scores that came with the data (Qwen's RM scores in the shipped set).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from primekit.errors import InputError
from primekit.prm.reading import Prompt, Query, aggregate, prm_prompt, split_steps
from primekit.prm.settings import ReadingSettings


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
    Best-of-N, one vote per aggregation); ``transform`` is ``sigmoid`` for unbounded
    log-odds-like rewards (implicit PRM rewards, a single-logit ORM) and ``raw`` for scores used
    as they are (probabilities; shipped RM scores, as Qwen's RM@N data gives them).
    """

    aggregate: str | None
    transform: str

    def apply(self, aggregated: float) -> float:
        return sigmoid(aggregated) if self.transform == "sigmoid" else aggregated


# ----------------------------------------------------------------------------------------------
# the scorer interface


class StepScorer(Protocol):
    """Anything that gives step scores for (query, response) pairs.

    ``identity()`` returns every setting that changes the scores (model fingerprints, coef, step
    mode, prompt context, ...); the score cache is keyed by it. ``aggregate`` turns step scores
    into one ranking score and ``vote_weight`` says how that score weights a vote.
    """

    name: str
    vote_weight: VoteWeight

    def identity(self) -> dict[str, Any]: ...

    def aggregate(self, step_scores: Sequence[float], how: str) -> float: ...

    def step_scores(self, queries: Sequence[Query], responses: Sequence[str]) -> list[list[float]]: ...


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
    import torch  # heavy: loaded on use, so importing this module stays fast

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
    """An implicit PRM read through :class:`primekit.prm.implicit.ImplicitPRM`.

    Step rewards r_k are aggregated with :func:`primekit.prm.reading.aggregate` (``min_q`` is
    EurusPRM Stage 1's Best-of-N). A weighted vote follows the chosen aggregation, weighting each
    candidate by the sigmoid of the score it is ranked by, as ImplicitPRM's Best-of-N evaluation
    does (``eval/bon_eval.py:52-58``): at coef 0.001 these weights are close to 1/2, so the vote is
    close to a plain majority vote, at a training beta of 0.05 much sharper. ``load`` returns the
    ``ImplicitPRM``; ``identity`` must name everything that changes its scores.
    """

    vote_weight = VoteWeight(aggregate=None, transform="sigmoid")

    def __init__(self, load: Callable[[], Any], identity: dict[str, Any], step_mode: str = "auto",
                 prm_context: str = "chat", name: str = "implicit_prm"):
        self._prm, self.step_mode, self.prm_context, self.name = _OnFirstUse(load), step_mode, prm_context, name
        self._identity = {"kind": "implicit_prm", "step_mode": step_mode, "prm_context": prm_context,
                          **identity}

    @classmethod
    def from_settings(cls, settings: ReadingSettings, dtype: str = "auto", device: str | None = None,
                      batch_size: int = 16) -> "ImplicitPRMScorer":
        """A scorer for resolved reading settings; the models load on the first uncached score."""
        def load():
            from primekit.prm.implicit import ImplicitPRM  # loads torch: imported on use

            return ImplicitPRM.from_settings(settings, dtype=dtype, device=device, batch_size=batch_size)

        identity = {"prm": model_fingerprint(settings.prm), "coef": settings.coef, "dtype": dtype,
                    "append_eos": settings.append_eos, "read_out": settings.read_out,
                    "ref": None if settings.prm_ref is None else model_fingerprint(settings.prm_ref)}
        return cls(load, identity, step_mode=settings.step_mode, prm_context=settings.prm_context)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def aggregate(self, step_scores: Sequence[float], how: str) -> float:
        return aggregate(step_scores, how)

    def step_scores(self, queries: Sequence[Query], responses: Sequence[str]) -> list[list[float]]:
        prm = self._prm.get()
        prompts = [prm_prompt(query, self.prm_context) for query in queries]
        return [result.step_rewards for result in prm.rewards(prompts, responses, self.step_mode)]


def _load_classifier(auto_class, path: str, dtype: str, device: str | None):
    from primekit.models import load_tokenizer, torch_dtype  # loads torch: imported on use

    try:
        model = auto_class.from_pretrained(path, dtype=torch_dtype(dtype))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load a {auto_class.__name__} model: {str(err).splitlines()[0]}",
                         path=path) from None
    model.eval().requires_grad_(False)
    return (model.to(device) if device else model), load_tokenizer(path)


def _num_labels(path: str) -> int:
    from transformers import AutoConfig  # heavy: loaded on use, so importing this module stays fast

    try:
        return AutoConfig.from_pretrained(path).num_labels
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the model config: {str(err).splitlines()[0]}", path=path) from None


def _check_label(label: int, num_labels: int) -> None:
    if not 0 <= label < num_labels:
        raise InputError(f"label {label} is not one of the model's {num_labels} labels")


# ----------------------------------------------------------------------------------------------
# TRL's input layouts for discriminative reward models


def trl_prm_input(tokenizer, prompt: str, steps: Sequence[str], separator: str) -> tuple[list[int], list[int]]:
    """Token ids of one input in the layout TRL's ``PRMTrainer`` trained step PRMs on, and the
    position of each step's label (``trl/trainer/prm_trainer.py``, ``tokenize_row``): the raw
    prompt tokenized alone after the tokenizer's BOS (when it has one), then every step tokenized
    on its own followed by the separator's ids; a step's label sits on the last separator token."""
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    ids = ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + encode(prompt)
    separator_ids = encode(separator)
    positions = []
    for step in steps:
        ids += encode(step) + separator_ids
        positions.append(len(ids) - 1)
    return ids, positions


def trl_reward_input(tokenizer, prompt: Prompt, response: str) -> list[int]:
    """Token ids of one (prompt, response) in the layout TRL's ``RewardTrainer`` trains on
    (``trl/trainer/reward_trainer.py``, dataset preparation): a conversation goes through the chat
    template with the response as the assistant turn; text is ``prompt + response`` with the EOS
    appended when missing, tokenized with the tokenizer's own special tokens (a BOS where it adds
    one). The model is read at the last token: the EOS for text; for a conversation whatever the
    template ends a turn with (Qwen's ChatML: the newline after ``<|im_end|>``)."""
    if isinstance(prompt, list):
        conversation = prompt + [{"role": "assistant", "content": response}]
        return list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])
    text = prompt + response
    if tokenizer.eos_token and not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    return list(tokenizer(text)["input_ids"])


def _plain_text(query: Query, prm_context: str) -> str:
    """The prompt text of a layout that takes raw text: the problem (``chat``: what TRL's
    step-labelled datasets hold) or the policy's prompt (``prompt``)."""
    return query.problem if prm_context == "chat" else prm_prompt(query, "prompt")


class TokenClassificationPRMScorer:
    """A discriminative PRM: a token-classification head read at the end of every step.

    The input is :func:`trl_prm_input`'s layout: the problem text (``prm_context chat``) or the
    policy's prompt, then each step with surrounding whitespace stripped and ``separator``
    appended; a step's score is the softmax probability of ``positive_label`` at its last
    separator token. Its step scores are values, not increments: ``min_step`` and ``min_q`` are
    both the weakest step, ``last`` the final step's probability. ``load`` returns
    ``(model, tokenizer)``.
    """

    vote_weight = VoteWeight(aggregate=None, transform="raw")

    def __init__(self, load: Callable[[], tuple[Any, Any]], identity: dict[str, Any],
                 step_mode: str = "auto", separator: str = "\n", positive_label: int = 1,
                 prm_context: str = "chat", batch_size: int = 8, name: str = "step_prm"):
        self._bundle = _OnFirstUse(load)
        self.step_mode, self.separator, self.prm_context = step_mode, separator, prm_context
        self.positive_label, self.batch_size, self.name = positive_label, batch_size, name
        self._identity = {"kind": "token_classification_prm", "layout": "trl", "step_mode": step_mode,
                          "separator": separator, "positive_label": positive_label,
                          "prm_context": prm_context, **identity}

    @classmethod
    def from_pretrained(cls, path: str, dtype: str = "auto", device: str | None = None,
                        positive_label: int = 1, **kwargs) -> "TokenClassificationPRMScorer":
        from transformers import (
            AutoModelForTokenClassification,  # heavy: loaded on use, so importing this module stays fast
        )

        _check_label(positive_label, _num_labels(path))
        return cls(lambda: _load_classifier(AutoModelForTokenClassification, path, dtype, device),
                   {"model": model_fingerprint(path), "dtype": dtype},
                   positive_label=positive_label, **kwargs)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def aggregate(self, step_scores: Sequence[float], how: str) -> float:
        return aggregate(step_scores, how, cumulative=False)

    def _row(self, tokenizer, query: Query, response: str) -> tuple[list[int], list[int]]:
        steps = [step.strip() for step in split_steps(response, self.step_mode).texts]
        return trl_prm_input(tokenizer, _plain_text(query, self.prm_context), steps, self.separator)

    def step_scores(self, queries: Sequence[Query], responses: Sequence[str]) -> list[list[float]]:
        import torch  # heavy: loaded on use, so importing this module stays fast

        model, tokenizer = self._bundle.get()
        _check_label(self.positive_label, model.config.num_labels)
        device = next(model.parameters()).device
        results: list[list[float]] = []
        for start in range(0, len(responses), self.batch_size):
            rows = [self._row(tokenizer, q, r) for q, r in zip(
                queries[start:start + self.batch_size], responses[start:start + self.batch_size])]
            ids, mask = _right_padded([ids for ids, _ in rows], _pad_id(tokenizer))
            with torch.no_grad():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            probs = logits.float().softmax(-1)[..., self.positive_label].cpu()
            results += [[float(probs[row, p]) for p in positions]
                        for row, (_, positions) in enumerate(rows)]
        return results


class SequenceClassificationORMScorer:
    """An outcome reward model: one score per response, read at its last token.

    The input is :func:`trl_reward_input`'s layout: with ``prm_context chat`` the problem as a
    user message and the response as the assistant turn, through the chat template (the problem
    text, when the tokenizer has none); with ``prompt`` the policy's prompt text, the response and
    the EOS. With one output (``num_labels == 1``, TRL's ``RewardTrainer`` convention) the score is
    that logit and a vote is weighted by its sigmoid; with several labels the score is the softmax
    probability of ``positive_label``, used as the vote weight directly. ``load`` returns
    ``(model, tokenizer)``.
    """

    def __init__(self, load: Callable[[], tuple[Any, Any]], identity: dict[str, Any],
                 num_labels: int, positive_label: int = 1, prm_context: str = "chat",
                 batch_size: int = 8, name: str = "orm"):
        self.single_logit = num_labels == 1
        if not self.single_logit:
            _check_label(positive_label, num_labels)
        self._bundle = _OnFirstUse(load)
        self.positive_label, self.prm_context = positive_label, prm_context
        self.batch_size, self.name = batch_size, name
        self.vote_weight = VoteWeight("last", "sigmoid" if self.single_logit else "raw")
        self._identity = {"kind": "sequence_classification_orm", "layout": "trl", "num_labels": num_labels,
                          "positive_label": None if self.single_logit else positive_label,
                          "prm_context": prm_context, **identity}

    @classmethod
    def from_pretrained(cls, path: str, dtype: str = "auto", device: str | None = None,
                        **kwargs) -> "SequenceClassificationORMScorer":
        from transformers import (
            AutoModelForSequenceClassification,  # heavy: loaded on use, so importing this module stays fast
        )

        return cls(lambda: _load_classifier(AutoModelForSequenceClassification, path, dtype, device),
                   {"model": model_fingerprint(path), "dtype": dtype}, _num_labels(path), **kwargs)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def aggregate(self, step_scores: Sequence[float], how: str) -> float:
        return aggregate(step_scores, how, cumulative=False)

    def _prompt(self, tokenizer, query: Query) -> Prompt:
        if self.prm_context == "chat" and getattr(tokenizer, "chat_template", None):
            return prm_prompt(query, "chat")
        return _plain_text(query, self.prm_context)

    def step_scores(self, queries: Sequence[Query], responses: Sequence[str]) -> list[list[float]]:
        import torch  # heavy: loaded on use, so importing this module stays fast

        model, tokenizer = self._bundle.get()
        if model.config.pad_token_id is None:
            # the head pools at the last non-pad token of each row, so it must know the pad id
            model.config.pad_token_id = _pad_id(tokenizer)
        device = next(model.parameters()).device
        results: list[list[float]] = []
        for start in range(0, len(responses), self.batch_size):
            rows = [trl_reward_input(tokenizer, self._prompt(tokenizer, q), r) for q, r in zip(
                queries[start:start + self.batch_size], responses[start:start + self.batch_size])]
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
        return aggregate(step_scores, "last", cumulative=False)

    def precomputed(self, problem) -> list[list[float]]:
        """The one-step "step scores" of a :class:`~primekit.bon.data.BonProblem`."""
        if problem.scores is None:
            raise InputError("the shipped scorer needs candidate scores ('scores', or Qwen's "
                             "'pred_score') and this problem has none", field="scores")
        return [[score] for score in problem.scores]

