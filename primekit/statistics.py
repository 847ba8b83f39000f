"""Benchmark metrics from per-sample correctness: accuracy, avg@k, unbiased pass@k, maj@k, and
confidence intervals over problems (Wilson for right-or-wrong scores, percentile bootstrap else).

Everything here is plain Python/numpy on lists of booleans and answer strings, so it is shared by
``prime-eval run``, ``prime-eval grade`` and the ``evaluate`` metric module, and it can be checked
against values worked out by hand.

Shapes: ``correct[i][j]`` says whether sample ``j`` of problem ``i`` is right, ``answers[i][j]``
is the answer extracted from it (``None`` when none was found). Samples are in generation order;
"the first k samples" of a problem define its @k metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist  # the standard library's, not this module

import numpy as np

from primekit.verifiers.math import is_equivalent

Equivalent = Callable[[str, str], bool]


def accuracy(correct: Sequence[bool]) -> float:
    """Fraction of true values (one sample per problem, e.g. greedy decoding)."""
    if not correct:
        raise ValueError("accuracy of an empty list")
    return sum(bool(c) for c in correct) / len(correct)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct among ``n`` samples (Chen et al., 2021):
    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` so that large
    ``n`` never builds huge binomials."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _require_k(correct: Sequence[Sequence[bool]], k: int) -> None:
    if not correct:
        raise ValueError("no problems")
    shortest = min(len(samples) for samples in correct)
    if not 1 <= k <= shortest:
        raise ValueError(f"k={k} needs every problem to have at least k samples (fewest: {shortest})")


def pass_at_k_scores(correct: Sequence[Sequence[bool]], k: int) -> list[float]:
    """Per-problem unbiased pass@k from all of each problem's samples."""
    _require_k(correct, k)
    return [pass_at_k(len(samples), sum(bool(s) for s in samples), k) for samples in correct]


def avg_at_k_scores(correct: Sequence[Sequence[bool]], k: int) -> list[float]:
    """Per-problem mean correctness of the first ``k`` samples (avg@k; the mean of 16 samples
    at temperature 0.3 is how AIME is now reported)."""
    _require_k(correct, k)
    return [sum(bool(s) for s in samples[:k]) / k for samples in correct]


def cluster_answers(answers: Sequence[str | None], equivalent: Equivalent | None = None
                    ) -> list[int | None]:
    """Cluster ids of the answers: each answer joins the first earlier cluster whose first member
    it is equivalent to, or starts a new one. ``None`` (no answer) gets no cluster.

    Identical strings never reach ``equivalent``. Because an answer's cluster depends only on the
    answers before it, the ids of the first ``k`` answers are the clustering of those ``k``
    answers, so one clustering serves maj@k for every k.
    """
    equivalent = equivalent or is_equivalent
    representatives: list[str] = []
    ids: list[int | None] = []
    for answer in answers:
        if answer is None:
            ids.append(None)
            continue
        found = next((index for index, representative in enumerate(representatives)
                      if answer == representative or equivalent(answer, representative)), None)
        if found is None:
            representatives.append(answer)
            found = len(representatives) - 1
        ids.append(found)
    return ids


def majority_is_correct(cluster_ids: Sequence[int | None], correct: Sequence[bool], k: int) -> bool:
    """Whether the majority answer among the first ``k`` samples is right.

    The largest cluster wins; a tie goes to the cluster seen first (as ``Counter.most_common``
    does in Qwen2.5-Math's maj@k). The cluster is as right as its first member, whose answer is
    the one the vote returns. No extracted answer at all counts as wrong.
    """
    counts: dict[int, int] = {}
    first_member: dict[int, int] = {}
    for position, cluster in enumerate(cluster_ids[:k]):
        if cluster is None:
            continue
        counts[cluster] = counts.get(cluster, 0) + 1
        first_member.setdefault(cluster, position)
    if not counts:
        return False
    winner = max(counts, key=lambda cluster: (counts[cluster], -first_member[cluster]))
    return bool(correct[first_member[winner]])


def maj_at_k_scores(answers: Sequence[Sequence[str | None]], correct: Sequence[Sequence[bool]],
                    k: int, equivalent: Equivalent | None = None) -> list[float]:
    """Per-problem maj@k (1.0 or 0.0) over the first ``k`` samples."""
    _require_k(correct, k)
    return [float(majority_is_correct(cluster_answers(a[:k], equivalent), c, k))
            for a, c in zip(answers, correct, strict=True)]


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-problem ``values`` (problems resampled
    with replacement, ``n_resamples`` times, with a seeded generator so reports are stable)."""
    if not values:
        raise ValueError("bootstrap of an empty list")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_resamples, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def wilson_interval(successes: int, total: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: the interval for a benchmark scored with one
    right-or-wrong sample per problem (greedy decoding). Unlike the percentile bootstrap it does
    not collapse to a point at 0% or 100% and keeps its coverage on 30-problem sets like AIME."""
    if total < 1 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total and total >= 1, got {successes}/{total}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def interval(scores: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 1000,
             seed: int = 0) -> tuple[float, float, str]:
    """``(low, high, method)`` for the mean of per-problem scores: Wilson when every score is 0 or
    1 (one right-or-wrong outcome per problem), the percentile bootstrap otherwise."""
    if all(score in (0.0, 1.0) for score in scores):
        return (*wilson_interval(int(sum(scores)), len(scores), confidence=confidence), "wilson")
    return (*bootstrap_ci(scores, confidence=confidence, n_resamples=n_resamples, seed=seed),
            "bootstrap")


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                     n_resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Difference of means ``mean(b) - mean(a)`` of paired per-problem scores (the same problems
    in both runs), its percentile-bootstrap interval (problems resampled, pairs kept together),
    and a two-sided bootstrap p-value for "no difference"."""
    if len(a) != len(b) or not a:
        raise ValueError("paired scores need the same, non-zero number of problems")
    differences = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences),
                                     size=(n_resamples, len(differences)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    p_value = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return {"difference": float(differences.mean()), "ci_low": float(low), "ci_high": float(high),
            "p_value": p_value, "num_problems": len(differences)}


def default_ks(n: int) -> list[int]:
    """k values reported for ``n`` samples: the powers of two below ``n``, and ``n``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks = [1 << p for p in range(n.bit_length()) if 1 << p < n]
    return ks + [n]


@dataclass(frozen=True)
class MetricValue:
    """A metric's mean over problems and its confidence interval (``ci``: wilson or bootstrap)."""

    value: float
    ci_low: float
    ci_high: float
    ci: str = "bootstrap"

    def to_json(self) -> dict[str, float | str]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "ci": self.ci}


def summarize(correct: Sequence[Sequence[bool]], answers: Sequence[Sequence[str | None]],
              ks: Sequence[int] | None = None, *, equivalent: Equivalent | None = None,
              confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
              ) -> dict[str, MetricValue]:
    """``pass@1``, ``avg@n``, ``pass@k`` (k > 1) and ``maj@k`` for ``ks`` (default
    :func:`default_ks` of the fewest samples any problem has), each with its interval.

    With ``n`` samples, pass@1 and avg@n are the same number (both are the mean of c/n); both are
    listed because papers report one or the other.
    """
    _require_k(correct, 1)
    n = min(len(samples) for samples in correct)
    ks = list(ks) if ks is not None else default_ks(n)
    clusters = [cluster_answers(a[:max(ks)], equivalent) for a in answers]
    per_problem: dict[str, list[float]] = {"pass@1": pass_at_k_scores(correct, 1),
                                           f"avg@{n}": avg_at_k_scores(correct, n)}
    for k in ks:
        if k > 1:
            per_problem[f"pass@{k}"] = pass_at_k_scores(correct, k)
    for k in ks:
        _require_k(correct, k)
        per_problem[f"maj@{k}"] = [float(majority_is_correct(ids, c, k))
                                   for ids, c in zip(clusters, correct, strict=True)]
    return {name: MetricValue(float(np.mean(scores)),
                              *interval(scores, confidence=confidence, n_resamples=n_resamples,
                                        seed=seed))
            for name, scores in per_problem.items()}
