"""Best-of-N reranking: score every candidate once (cached), then measure each selection rule.

Scores are the expensive part (two forward passes of a 7B model per candidate for an implicit
PRM), so they are computed once per (problem, candidate, scorer identity) and appended to a cache
file as they come: a killed run resumes where it stopped, and a re-run with another aggregation,
another N or another number of subsets loads the cache and never builds the model.

Accuracy at N is averaged over many random N-subsets of each problem's candidates (the same
subsets for every rule, so rules are compared on equal draws), ties are broken uniformly at random
(:mod:`primekit.bon.selection`), and the interval is a percentile bootstrap over problems.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from primekit.arguments import canonical_aggregate
from primekit.bon import selection
from primekit.bon.data import BonProblem
from primekit.bon.scorers import StepScorer
from primekit.errors import InputError
from primekit.io import ResumableJsonl
from primekit.prm.reading import Query
from primekit.statistics import bootstrap_ci, cluster_answers
from primekit.verifiers.math import grade_many
from primekit.verifiers.math.answer import extract_answer

IDENTITY_KEY = "__identity__"
DEFAULT_TRIALS = 256


# ----------------------------------------------------------------------------------------------
# the score cache


def scoring_context(problem: BonProblem) -> Query:
    """What is known about a candidate's input: the problem text, and the exact prompt the policy
    saw when the file records it. Each scorer decides what of it its model reads
    (``prm_context``)."""
    return Query(problem.problem, problem.prompt)


def candidate_key(problem: BonProblem, index: int) -> str:
    """Cache key of one candidate: problem id, position, and a hash of problem, prompt and text
    (so an edited candidate file is rescored rather than served stale scores)."""
    blob = json.dumps([problem.problem, problem.prompt, problem.candidates[index]], ensure_ascii=False)
    return f"{problem.id}#{index}#{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def default_cache_path(input_path: str | os.PathLike, scorer_name: str, identity: dict[str, Any],
                       cache_dir: str | os.PathLike | None = None,
                       fallback_dir: str | os.PathLike | None = None) -> Path:
    """``<input>.bon-cache/<scorer>-<hash of identity>.jsonl`` next to the input; in ``cache_dir``
    when one is given, and in ``fallback_dir`` when the input's folder cannot be written."""
    input_path = Path(input_path)
    folder = input_path.parent
    if cache_dir is not None:
        folder = Path(cache_dir)
    elif fallback_dir is not None and not os.access(folder, os.W_OK):
        folder = Path(fallback_dir)
    return cache_file(folder / f"{input_path.name}.bon-cache", scorer_name, identity)


def cache_file(folder: str | os.PathLike, scorer_name: str, identity: dict[str, Any]) -> Path:
    """``<folder>/<scorer>-<hash of identity>.jsonl``: one file per scorer setting."""
    return Path(folder) / f"{scorer_name}-{identity_hash(identity)}.jsonl"


class ScoreCache:
    """Append-only step scores of one scorer identity; the first record holds the identity, and a
    file written under another identity is refused rather than mixed."""

    def __init__(self, path: str | os.PathLike, identity: dict[str, Any]):
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        self._file = ResumableJsonl(self.path, key=lambda record: record["key"])
        header = self._file.records.get(IDENTITY_KEY)
        if header is None:
            self._file.append({"key": IDENTITY_KEY, "identity": self.identity})
        elif header["identity"] != self.identity:
            raise InputError("this score cache belongs to another scorer setting; delete it or "
                             "choose another cache folder", path=self.path)

    def get(self, key: str) -> list[float] | None:
        record = self._file.records.get(key)
        return None if record is None else record["steps"]

    def put(self, key: str, steps: list[float]) -> None:
        self._file.append({"key": key, "steps": steps})


def _context_length(query: Query) -> int:
    return len(query.prompt if query.prompt is not None else query.problem)


def score_problems(problems: Sequence[BonProblem], scorer: StepScorer, cache: ScoreCache | None, *,
                   batch_size: int = 16, sort_by_length: bool = True,
                   show_progress: bool = False) -> list[list[list[float]]]:
    """Step scores of every candidate (``[problem][candidate][step]``), computing only those the
    cache lacks, one batch at a time, each batch appended to the cache as soon as it is scored.

    Candidates go to the model longest first, so batches hold similar lengths (little padding)
    and a batch that does not fit in memory fails at once rather than at the end.
    """
    if hasattr(scorer, "precomputed"):
        return [scorer.precomputed(problem) for problem in problems]
    keys = [[candidate_key(p, i) for i in range(len(p.candidates))] for p in problems]
    todo = [(pi, ci) for pi, p in enumerate(problems) for ci in range(len(p.candidates))
            if cache is None or cache.get(keys[pi][ci]) is None]
    for pi, ci in todo:
        if not problems[pi].candidates[ci].strip():
            raise InputError(f"candidate {ci} of problem '{problems[pi].id}' has no text for "
                             f"{scorer.name} to read", field=f"candidates[{ci}]")
    if sort_by_length:
        todo.sort(key=lambda pair: -(_context_length(scoring_context(problems[pair[0]]))
                                     + len(problems[pair[0]].candidates[pair[1]])))
    computed: dict[tuple[int, int], list[float]] = {}
    bar = tqdm(total=len(todo), desc=f"score ({scorer.name})", unit="candidate",
               disable=not show_progress or not todo)
    for start in range(0, len(todo), max(1, batch_size)):
        batch = todo[start:start + batch_size]
        steps = scorer.step_scores([scoring_context(problems[pi]) for pi, _ in batch],
                                   [problems[pi].candidates[ci] for pi, ci in batch])
        for (pi, ci), values in zip(batch, steps, strict=True):
            values = [float(v) for v in values]
            computed[(pi, ci)] = values
            if cache is not None:
                cache.put(keys[pi][ci], values)
        bar.update(len(batch))
    bar.close()
    return [[computed[(pi, ci)] if (pi, ci) in computed else cache.get(keys[pi][ci])
             for ci in range(len(p.candidates))] for pi, p in enumerate(problems)]


# ----------------------------------------------------------------------------------------------
# correctness and answer classes


@dataclass
class Outcomes:
    """What the selection rules need to know about one problem's candidates."""

    correct: np.ndarray  # float 0/1 per candidate
    classes: np.ndarray  # answer class per candidate; no answer = a class of its own
    preds: list[str | None]


def problem_outcomes(problems: Sequence[BonProblem], *, regrade: bool = False,
                     equivalent: Callable[[str, str], bool] | None = None) -> list[Outcomes]:
    """Correctness and answer classes of every candidate.

    Correctness and extracted answers that came with the file are used as they are (they are the
    data's own judgement, e.g. Qwen's grader in the shipped set) unless ``regrade``; otherwise
    the project grader extracts and grades against ``answer``. Answers are grouped by the
    grader's equivalence, not by string equality.
    """

    to_grade = [p for p in problems if regrade or p.correct is None]
    for problem in to_grade:
        if problem.answer is None:
            raise InputError("a problem without correctness labels needs a gold answer to be "
                             f"graded (problem id '{problem.id}')", field="answer")
    verdicts = iter(grade_many([(c, p.answer) for p in to_grade for c in p.candidates]))
    outcomes = []
    for problem in problems:
        if regrade or problem.correct is None:
            correct = [next(verdicts) for _ in problem.candidates]
        else:
            correct = problem.correct
        preds = (problem.preds if problem.preds is not None and not regrade
                 else [extract_answer(c) for c in problem.candidates])
        clusters = cluster_answers(preds, equivalent)
        fresh = iter(range(len(preds) + 1, 2 * len(preds) + 1))
        classes = [cluster if cluster is not None else next(fresh) for cluster in clusters]
        outcomes.append(Outcomes(np.asarray(correct, dtype=np.float64),
                                 np.asarray(classes, dtype=np.int64), list(preds)))
    return outcomes


# ----------------------------------------------------------------------------------------------
# selection rules and accuracy-vs-N curves


@dataclass(frozen=True)
class Method:
    """A selection rule: ``kind`` is ``random``, ``oracle``, ``bon`` (argmax of ``values``) or
    ``vote`` (weighted by ``values``; None means one vote each, the plain majority vote).
    ``values`` holds one array per problem."""

    key: str
    label: str
    kind: str
    values: list[np.ndarray] | None = field(default=None, compare=False, repr=False)

    def winners(self, problem_index: int, outcomes: Outcomes, subsets: np.ndarray) -> np.ndarray:
        """Boolean (T, n) mask of the candidates this rule would pick in each subset."""
        if self.kind == "random":
            return selection.uniform_winners(subsets)
        if self.kind == "oracle":
            return selection.oracle_winners(outcomes.correct[subsets])
        values = (np.ones(len(outcomes.correct)) if self.values is None
                  else self.values[problem_index])
        if self.kind == "vote":
            return selection.vote_winners(outcomes.classes[subsets], values[subsets])
        return selection.argmax_winners(values[subsets])

    def accuracy(self, problem_index: int, outcomes: Outcomes, subsets: np.ndarray) -> np.ndarray:
        """Expected correctness of the pick in each subset (uniform tie-breaking), shape (T,)."""
        return selection.expected_correct(self.winners(problem_index, outcomes, subsets),
                                          outcomes.correct[subsets])


BASELINES = (Method("random", "single sample (mean)", "random"),
             Method("majority", "majority vote", "vote"),
             Method("oracle", "oracle (pass@N)", "oracle"))


def scorer_methods(scorer: StepScorer, step_scores: Sequence[Sequence[Sequence[float]]],
                   aggregates: Sequence[str]) -> list[Method]:
    """Best-of-N by the scorer (one rule per aggregation) and its reward-weighted vote (one, or
    one per aggregation when the weight follows the ranking aggregation)."""
    aggregates = [canonical_aggregate(how) for how in aggregates]

    def per_problem(how: str, transform: Callable[[float], float] = float) -> list[np.ndarray]:
        return [np.array([transform(scorer.aggregate(steps, how)) for steps in problem])
                for problem in step_scores]

    methods = [Method(f"bon/{scorer.name}/{how}", f"{scorer.name} BoN ({how})", "bon",
                      per_problem(how)) for how in aggregates]
    weight = scorer.vote_weight
    if weight.aggregate is not None:
        methods.append(Method(f"vote/{scorer.name}", f"{scorer.name} weighted vote", "vote",
                              per_problem(weight.aggregate, weight.apply)))
    else:
        methods += [Method(f"vote/{scorer.name}/{how}", f"{scorer.name} weighted vote ({how})",
                           "vote", per_problem(how, weight.apply)) for how in aggregates]
    return methods


def candidate_counts(outcomes: Sequence[Outcomes]) -> tuple[int, int]:
    counts = [len(o.correct) for o in outcomes]
    return min(counts), max(counts)


def bon_curves(outcomes: Sequence[Outcomes], methods: Sequence[Method], ns: Sequence[int], *,
               trials: int = DEFAULT_TRIALS, seed: int = 0) -> dict[str, dict[int, np.ndarray]]:
    """Per-problem expected accuracy of every method at every N: ``curves[key][n][problem]``.

    Problem ``i`` draws its subsets from a generator seeded by ``(seed, i)``, and every method is
    evaluated on those same subsets.
    """
    fewest, _ = candidate_counts(outcomes)
    if not ns or max(ns) > fewest or min(ns) < 1:
        raise InputError(f"N must be between 1 and {fewest} (the fewest candidates any problem has)")
    curves = {m.key: {n: np.zeros(len(outcomes)) for n in ns} for m in methods}
    for index, problem in enumerate(outcomes):
        rng = np.random.default_rng([seed, index])
        for n in ns:
            subsets = selection.draw_subsets(len(problem.correct), n, trials, rng)
            for method in methods:
                curves[method.key][n][index] = float(method.accuracy(index, problem, subsets).mean())
    return curves


def curve_summary(curves: dict[str, dict[int, np.ndarray]], *, confidence: float = 0.95,
                  n_resamples: int = 1000, seed: int = 0) -> dict[str, dict[int, dict[str, float]]]:
    """Mean accuracy and percentile-bootstrap interval over problems, per method and N."""

    summary: dict[str, dict[int, dict[str, float]]] = {}
    for key, by_n in curves.items():
        summary[key] = {}
        for n, values in by_n.items():
            low, high = bootstrap_ci(values.tolist(), confidence=confidence,
                                     n_resamples=n_resamples, seed=seed)
            summary[key][n] = {"value": float(values.mean()), "ci_low": low, "ci_high": high}
    return summary


def paired_difference(curves: dict[str, dict[int, np.ndarray]], better: str, baseline: str, n: int,
                      *, n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """How much ``better`` beats ``baseline`` at N, with a bootstrap interval over problems of the
    per-problem difference (paired: both were measured on the same subsets)."""

    difference = curves[better][n] - curves[baseline][n]
    low, high = bootstrap_ci(difference.tolist(), n_resamples=n_resamples, seed=seed)
    return {"value": float(difference.mean()), "ci_low": low, "ci_high": high}


def selections(outcomes: Sequence[Outcomes], methods: Sequence[Method]) -> list[dict[str, int]]:
    """The candidate each method picks from all of a problem's candidates (first of a tie)."""
    picks = []
    for index, problem in enumerate(outcomes):
        everything = np.arange(len(problem.correct))[None, :]
        picks.append({m.key: int(np.flatnonzero(m.winners(index, problem, everything)[0])[0])
                      for m in methods if m.kind != "random"})
    return picks


# ----------------------------------------------------------------------------------------------
# the call prime-eval makes


def bon_metrics(problems: Sequence[BonProblem], scorer: StepScorer, n: int, *,
                aggregate: str = "min_q", cache: ScoreCache | None = None,
                trials: int = DEFAULT_TRIALS, seed: int = 0, batch_size: int = 16,
                confidence: float = 0.95, n_resamples: int = 1000) -> dict[str, dict[str, float]]:
    """Reranked accuracy at N for a benchmark run: ``bon@N`` (Best-of-N by ``scorer`` with
    ``aggregate``) and ``weighted_maj@N`` (its reward-weighted vote), each as
    ``{"value", "ci_low", "ci_high"}`` (fractions in [0, 1]).

    ``problems`` carry the run's samples: ``candidates`` (responses), ``prompt`` (the rendered
    prompt), ``preds`` (extracted answers) and ``correct``; N must not exceed the fewest
    candidates any problem has (more candidates are averaged over random N-subsets).
    """
    steps = score_problems(problems, scorer, cache, batch_size=batch_size)
    methods = scorer_methods(scorer, steps, [aggregate])
    bon, vote = methods[0], methods[-1]
    curves = bon_curves(problem_outcomes(problems), [bon, vote], [n], trials=trials, seed=seed)
    summary = curve_summary(curves, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return {f"bon@{n}": summary[bon.key][n], f"weighted_maj@{n}": summary[vote.key][n]}
