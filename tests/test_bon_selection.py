"""Selection rules of Best-of-N on hand-sized examples (expected values worked out in comments)."""

from __future__ import annotations

import numpy as np
import pytest

from primekit.bon import selection
from primekit.bon.rerank import BASELINES, Method, Outcomes, bon_curves


def test_argmax_breaks_ties_uniformly():
    scores = np.array([[0.9, 0.1, 0.9]])
    winners = selection.argmax_winners(scores)
    assert winners.tolist() == [[True, False, True]]
    # one of the two tied candidates is right: expected correctness 1/2
    assert selection.expected_correct(winners, np.array([[1.0, 0.0, 0.0]])).tolist() == [0.5]


def test_majority_and_weighted_vote():
    classes = np.array([[0, 1, 1, 2]])
    # majority: class 1 has two votes -> candidates 1 and 2 win; both wrong -> 0
    majority = selection.vote_winners(classes, np.ones((1, 4)))
    assert majority.tolist() == [[False, True, True, False]]
    # weights 3, 1, 1, 0.5: class 0 totals 3 > class 1's 1 + 1 = 2 > class 2's 0.5
    weighted = selection.vote_winners(classes, np.array([[3.0, 1.0, 1.0, 0.5]]))
    assert weighted.tolist() == [[True, False, False, False]]
    # 1-1 tie between two answers, one right: expected 1/2
    tie = selection.vote_winners(np.array([[0, 1]]), np.ones((1, 2)))
    assert selection.expected_correct(tie, np.array([[1.0, 0.0]])).tolist() == [0.5]


def test_weighted_vote_tie_survives_summation_order():
    # 0.1 + 0.2 != 0.3 in floating point, yet the two answers weigh the same
    classes = np.array([[0, 0, 1]])
    winners = selection.vote_winners(classes, np.array([[0.1, 0.2, 0.3]]))
    assert winners.all()


def test_oracle_and_random():
    correct = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert selection.oracle_winners(correct).tolist() == [[False, True, False], [True, True, True]]
    assert selection.expected_correct(selection.oracle_winners(correct), correct).tolist() == [1.0, 0.0]
    assert selection.expected_correct(selection.uniform_winners(correct), correct).tolist() == [1 / 3, 0.0]


def test_draw_subsets_enumerates_when_few_and_samples_without_repeats_otherwise():
    rng = np.random.default_rng(0)
    assert selection.draw_subsets(3, 2, 10, rng).tolist() == [[0, 1], [0, 2], [1, 2]]
    sampled = selection.draw_subsets(10, 3, 5, rng)  # C(10, 3) = 120 > 5 subsets: sampled
    assert sampled.shape == (5, 3)
    assert all(len(set(row)) == 3 for row in sampled.tolist())
    with pytest.raises(ValueError):
        selection.draw_subsets(3, 4, 10, rng)


def test_curves_average_over_every_subset():
    # scores 0.9, 0.1, 0.5 with only candidate 0 right. Best-of-2 over the 3 pairs:
    # {0,1} -> 0 (right), {0,2} -> 0 (right), {1,2} -> 2 (wrong): 2/3.
    # oracle pass@2 with c=1 of n=3: 1 - C(2,2)/C(3,2) = 2/3; random: 1/3 at every N.
    outcomes = [Outcomes(np.array([1.0, 0.0, 0.0]), np.array([0, 1, 2]), ["1", "2", "3"])]
    scores = Method("bon/x", "x", "bon", [np.array([0.9, 0.1, 0.5])])
    curves = bon_curves(outcomes, [*BASELINES, scores], [1, 2, 3], trials=100)
    assert curves["bon/x"][2][0] == pytest.approx(2 / 3)
    assert curves["bon/x"][3][0] == 1.0
    assert curves["oracle"][2][0] == pytest.approx(2 / 3)
    assert curves["random"][2][0] == pytest.approx(1 / 3)
    # all answers differ, so every vote is a 3-way tie at N=3: expected 1/3
    assert curves["majority"][3][0] == pytest.approx(1 / 3)
