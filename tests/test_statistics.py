"""Benchmark metrics against values worked out by hand, and the offline `evaluate` module."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from primekit.statistics import (
    accuracy,
    avg_at_k_scores,
    bootstrap_ci,
    cluster_answers,
    default_ks,
    maj_at_k_scores,
    majority_is_correct,
    pass_at_k,
    pass_at_k_scores,
    summarize,
)


def numeric_equal(a: str, b: str) -> bool:
    """A stand-in grader equivalence: equal as fractions (so "1/2" == "0.5")."""
    return Fraction(a) == Fraction(b)


def test_accuracy():
    assert accuracy([True, False, True, True]) == 0.75
    with pytest.raises(ValueError):
        accuracy([])


def test_pass_at_k_hand_values():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the fraction correct: 3/10
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # n=4, c=1, k=3: 1 - C(3,3)/C(4,3) = 1 - 1/4 = 0.75
    assert pass_at_k(4, 1, 3) == pytest.approx(0.75)
    # n - c < k: every k-subset holds a correct sample
    assert pass_at_k(4, 3, 2) == 1.0
    assert pass_at_k(5, 0, 3) == 0.0


def test_pass_at_k_large_n_matches_exact_binomials():
    # the product form must agree with exact integer binomials where floats of C(n, k) overflow
    for n, c, k in [(200, 10, 50), (1000, 1, 1), (2000, 7, 1000)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_per_problem_scores():
    correct = [[True, False, True, True], [False, False, False, True]]
    # avg@4: (3/4 + 1/4) / 2 problems; avg@2 uses the first two samples: 1/2 and 0
    assert avg_at_k_scores(correct, 4) == [0.75, 0.25]
    assert avg_at_k_scores(correct, 2) == [0.5, 0.0]
    # pass@2 with n=4: c=3 -> 1 (n-c=1 < 2); c=1 -> 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k_scores(correct, 2) == pytest.approx([1.0, 0.5])
    with pytest.raises(ValueError, match="at least k samples"):
        pass_at_k_scores([[True], [True, False]], 2)


def test_cluster_answers_groups_equivalent_answers_in_order():
    assert cluster_answers(["1/2", "0.5", "3", None, "0.50", "3"], numeric_equal) == [0, 0, 1, None, 0, 1]


def test_cluster_answers_never_asks_about_identical_strings():
    def fail(a: str, b: str) -> bool:
        raise AssertionError(f"equivalence asked about {a!r} and {b!r}")

    assert cluster_answers(["x", "x", None, "x"], fail) == [0, 0, None, 0]


def test_majority_vote_ties_go_to_the_first_seen_cluster():
    # clusters 0,1,1,0: a 2-2 tie; cluster 0 appeared first, its first member (sample 0) is right
    assert majority_is_correct([0, 1, 1, 0], [True, False, False, True], k=4) is True
    # among the first 3 samples cluster 1 has 2 votes; its first member (sample 1) is wrong
    assert majority_is_correct([0, 1, 1, 0], [True, False, False, True], k=3) is False
    assert majority_is_correct([None, None], [False, False], k=2) is False


def test_maj_at_k_scores():
    answers = [["4", "5", "5"], ["1/2", "7", "0.5"]]
    correct = [[True, False, False], [True, False, True]]
    # problem 1: "5" wins 2-1 -> wrong; maj@1 is sample 0 -> right
    # problem 2: "1/2" and "0.5" form one cluster of 2 -> right
    assert maj_at_k_scores(answers, correct, 3, numeric_equal) == [0.0, 1.0]
    assert maj_at_k_scores(answers, correct, 1, numeric_equal) == [1.0, 1.0]


def test_bootstrap_ci():
    assert bootstrap_ci([0.4] * 20) == pytest.approx((0.4, 0.4))
    values = [1.0, 0.0] * 50
    low, high = bootstrap_ci(values, seed=3)
    assert (low, high) == bootstrap_ci(values, seed=3)  # seeded: the same report every time
    # mean 0.5, standard error sqrt(0.25/100) = 0.05 -> about 0.5 -+ 1.96 * 0.05 = (0.40, 0.60)
    assert low == pytest.approx(0.40, abs=0.03) and high == pytest.approx(0.60, abs=0.03)
    narrow = bootstrap_ci(values, confidence=0.5, seed=3)
    assert low < narrow[0] < 0.5 < narrow[1] < high
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(4) == [1, 2, 4]
    assert default_ks(6) == [1, 2, 4, 6]
    assert default_ks(16) == [1, 2, 4, 8, 16]


def test_summarize_hand_example():
    correct = [[True, False], [False, False], [True, True]]
    answers = [["2", "3"], ["1", None], ["0.5", "1/2"]]
    result = summarize(correct, answers, equivalent=numeric_equal, n_resamples=200)
    assert list(result) == ["pass@1", "avg@2", "pass@2", "maj@1", "maj@2"]
    # pass@1 = avg@2 = (1/2 + 0 + 1) / 3 = 0.5
    assert result["pass@1"].value == pytest.approx(0.5)
    assert result["avg@2"].value == pytest.approx(0.5)
    # pass@2: problem 1 has one right of two -> 1; problem 2 -> 0; problem 3 -> 1: 2/3
    assert result["pass@2"].value == pytest.approx(2 / 3)
    # maj@2: problem 1 tie "2" vs "3" -> "2" (first) is right; problem 2 only "1", wrong;
    # problem 3 one cluster, right: 2/3
    assert result["maj@2"].value == pytest.approx(2 / 3)
    assert result["maj@1"].value == pytest.approx(2 / 3)
    for metric in result.values():
        assert 0.0 <= metric.ci_low <= metric.value <= metric.ci_high <= 1.0


def test_evaluate_module_loads_offline_and_matches(tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    from primekit.eval.evaluate_metric import METRIC_PATH

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    metric = evaluate.load(METRIC_PATH)
    result = metric.compute(
        predictions=[["so \\boxed{4}", "so \\boxed{5}"], ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}"]],
        references=["4", "1/2"], n_resamples=100)
    # correctness [[1, 0], [1, 1]]: pass@1 = (1/2 + 1) / 2 = 0.75, pass@2 = 1,
    # maj@2: problem 1 is a 1-1 tie won by "4" (first), problem 2 one cluster -> both right
    assert result["pass@1"] == pytest.approx(0.75)
    assert result["pass@2"] == pytest.approx(1.0)
    assert result["maj@2"] == pytest.approx(1.0)
    low, high = result["pass@1_ci"]
    assert 0.5 <= low <= 0.75 <= high <= 1.0


def test_wilson_interval_hand_values():
    from primekit.statistics import interval, wilson_interval

    # 8/10 at 95% (z = 1.959964): centre (0.8 + z^2/20) / (1 + z^2/10) = 0.7167,
    # half-width z * sqrt(0.016 + z^2/400) / (1 + z^2/10) = 0.2266 -> [0.4902, 0.9433]
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 30)[0] == 0.0 and wilson_interval(0, 30)[1] == pytest.approx(0.1135, abs=1e-4)
    assert interval([1.0, 0.0, 1.0, 1.0])[2] == "wilson"
    assert interval([0.5, 0.25, 1.0])[2] == "bootstrap"


def test_paired_bootstrap_difference():
    from primekit.statistics import paired_bootstrap

    a, b = [0.0] * 50 + [1.0] * 50, [1.0] * 100  # b fixes 50 of 100 problems
    result = paired_bootstrap(a, b, n_resamples=2000)
    assert result["difference"] == pytest.approx(0.5) and result["num_problems"] == 100
    assert 0.39 < result["ci_low"] < 0.5 < result["ci_high"] < 0.61 and result["p_value"] == 0.0
    same = paired_bootstrap(a, a, n_resamples=200)
    assert same["difference"] == 0.0 and same["p_value"] == 1.0
