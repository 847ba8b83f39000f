"""How one answer is chosen from N candidates, and how often that choice is right (pure numpy).

Every rule is evaluated on many subsets of a problem's candidates at once: ``subsets`` is an
integer array of shape (T, n), T subsets of n candidate indices. A rule marks its *winners* in
each subset (several when there is a tie) and the expected correctness of the choice is the mean
correctness of the winners: ties are broken uniformly at random, and we report the expectation
rather than one arbitrary draw (Qwen's RM@N script instead takes the first candidate, which makes
its maj@N depend on the order of the samples).

Rules: Best-of-N by a score (argmax), majority vote over answers, reward-weighted majority vote
(each answer's total weight), a random pick (the mean single-sample accuracy) and the oracle
(right if any candidate is right: pass@n).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

# Two weighted-vote totals closer than this (relative) count as a tie: sums of the same weights
# in another order differ in the last bits.
TIE_TOLERANCE = 1e-9


def draw_subsets(num_candidates: int, n: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Subsets of ``n`` of ``num_candidates`` candidates, shape (T, n).

    When there are at most ``trials`` distinct subsets, all of them are returned (so the average is
    exact); otherwise ``trials`` uniformly random ones, each without repeated candidates.
    """
    if not 1 <= n <= num_candidates:
        raise ValueError(f"draw_subsets: n must be in [1, {num_candidates}], got {n}")
    if math.comb(num_candidates, n) <= trials:
        return np.array(list(combinations(range(num_candidates), n)), dtype=np.int64)
    return np.argsort(rng.random((trials, num_candidates)), axis=1)[:, :n]


def expected_correct(winners: np.ndarray, correct_in_subset: np.ndarray) -> np.ndarray:
    """Mean correctness of the winners of each subset (uniform tie-breaking), shape (T,)."""
    return (winners * correct_in_subset).sum(axis=1) / winners.sum(axis=1)


def argmax_winners(scores: np.ndarray) -> np.ndarray:
    """Best-of-N: the candidates with the highest score in each row of ``scores`` (T, n)."""
    return scores == scores.max(axis=1, keepdims=True)


def vote_winners(classes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted majority vote: the candidates whose answer class has the largest total weight in
    each row. ``classes`` and ``weights`` are (T, n); a plain majority vote has all weights 1.
    Only classes present in a row compete, so negative weights work too."""
    labels, dense = np.unique(classes, return_inverse=True)
    dense = dense.reshape(classes.shape)
    totals = np.zeros((classes.shape[0], len(labels)))
    np.add.at(totals, (np.arange(classes.shape[0])[:, None], dense), weights)
    own_total = np.take_along_axis(totals, dense, axis=1)
    best = own_total.max(axis=1, keepdims=True)
    return own_total >= best - TIE_TOLERANCE * np.maximum(1.0, np.abs(best))


def oracle_winners(correct_in_subset: np.ndarray) -> np.ndarray:
    """The oracle picks a right candidate whenever there is one (pass@n); in a subset without
    one, every candidate is an equally wrong pick."""
    right = correct_in_subset > 0
    return right | ~right.any(axis=1, keepdims=True)


def uniform_winners(subsets: np.ndarray) -> np.ndarray:
    """A random pick: every candidate equally likely (the mean single-sample accuracy)."""
    return np.ones(subsets.shape, dtype=bool)
