"""Sample-efficiency read-outs of accuracy-vs-responses curves (primekit.rl.sample_efficiency)."""

from __future__ import annotations

import numpy as np
import pytest

from primekit.rl.sample_efficiency import (bootstrap_band, efficiency_ratio, paired_comparison, paired_t_interval,
                                            responses_to_reach)

X = [0, 10, 20]


def test_responses_to_reach_interpolates_between_evaluations():
    assert responses_to_reach(X, [0.5, 0.6, 0.7], 0.65) == pytest.approx(15.0)
    assert responses_to_reach(X, [0.5, 0.6, 0.7], 0.7) == pytest.approx(20.0)
    assert responses_to_reach(X, [0.7, 0.6, 0.8], 0.65) == 0.0      # already there at the start
    assert responses_to_reach(X, [0.5, 0.8, 0.6], 0.65) == pytest.approx(5.0)  # the first crossing counts
    assert responses_to_reach(X, [0.5, 0.6, 0.6], 0.65) is None
    with pytest.raises(ValueError):
        responses_to_reach(X, [0.5], 0.6)


def test_extrapolation_extends_a_rising_last_segment_only_so_far():
    # last segment rises 0.1 per 10 responses: 0.72 is crossed at 22, inside 20 * 1.25
    assert responses_to_reach(X, [0.5, 0.6, 0.7], 0.72, extrapolate=0.25) == pytest.approx(22.0)
    assert responses_to_reach(X, [0.5, 0.6, 0.7], 0.76, extrapolate=0.25) is None   # would be at 26
    assert responses_to_reach(X, [0.5, 0.7, 0.7], 0.72, extrapolate=0.25) is None   # flat: never
    assert responses_to_reach(X, [0.5, 0.6, 0.7], 0.72) is None                      # off by default


def test_extrapolation_turns_a_near_miss_into_a_ratio_just_below_one():
    result = efficiency_ratio(X, [[0.5, 0.6, 0.7]], [[0.5, 0.58, 0.68]], resamples=100, extrapolate=0.25)
    assert result.variant_responses == pytest.approx(22.0)
    assert result.ratio == pytest.approx(20 / 22)


def test_ratio_of_single_seeds_by_hand():
    result = efficiency_ratio(X, [[0.5, 0.6, 0.7]], [[0.5, 0.7, 0.8]], resamples=200)
    assert result.target == pytest.approx(0.7)
    assert (result.baseline_responses, result.variant_responses) == (pytest.approx(20.0), pytest.approx(10.0))
    assert result.ratio == pytest.approx(2.0) and result.low == result.high == pytest.approx(2.0)
    assert result.reached_fraction == 1.0


def test_ratio_interval_covers_the_seed_spread():
    """Variant seeds: one twice as fast as the baseline, one never reaching it. Resamples give
    ratio 2 (both fast), 1 (one of each: the mean curve equals the baseline's) or 0 (never)."""
    baseline = [[0.5, 0.6, 0.7], [0.5, 0.6, 0.7]]
    variant = [[0.5, 0.7, 0.8], [0.5, 0.5, 0.6]]
    result = efficiency_ratio(X, baseline, variant, resamples=4000, seed=1)
    assert result.ratio == pytest.approx(1.0)
    assert result.low == 0.0 and result.high == pytest.approx(2.0)
    assert result.reached_fraction == pytest.approx(0.75, abs=0.03)


def test_bootstrap_band_brackets_the_mean_and_collapses_without_spread():
    mean, low, high = bootstrap_band([[0.5, 0.6], [0.5, 0.6]])
    np.testing.assert_allclose([mean, low, high], [[0.5, 0.6]] * 3)
    mean, low, high = bootstrap_band([[0.0, 0.4], [0.0, 0.6], [0.0, 0.8]], resamples=4000)
    assert mean[1] == pytest.approx(0.6) and low[1] < 0.6 < high[1]
    assert 0.4 - 1e-9 <= low[1] and high[1] <= 0.8 + 1e-9


def test_paired_t_interval_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2 dof) = 4.302653
    result = paired_t_interval([0, 0, 0], [1, 2, 3])
    half = 4.302653 / np.sqrt(3)
    assert result.mean == pytest.approx(2.0) and result.seeds == 3
    assert (result.low, result.high) == (pytest.approx(2 - half, abs=1e-5), pytest.approx(2 + half, abs=1e-5))
    # pairing removes what the seeds share: same spread across seeds, same shift, zero-width interval
    shared = paired_t_interval([0.5, 0.7, 0.9], [0.6, 0.8, 1.0])
    assert shared.mean == pytest.approx(0.1) and shared.high - shared.low == pytest.approx(0.0, abs=1e-12)
    single = paired_t_interval([0.5], [0.6])
    assert single.mean == pytest.approx(0.1) and np.isnan(single.low)
    with pytest.raises(ValueError):
        paired_t_interval([0.5, 0.6], [0.6])


def test_paired_comparison_by_hand():
    # seed 0: the variant reaches the baseline's final mean (0.7) at 10 instead of 20; seed 1: at 20 for both
    baseline = [[0.5, 0.6, 0.7], [0.5, 0.6, 0.7]]
    variant = [[0.5, 0.7, 0.8], [0.5, 0.6, 0.7]]
    result = paired_comparison(X, baseline, variant)
    assert result.target == pytest.approx(0.7) and result.seeds_reaching == 2
    assert result.final_accuracy.mean == pytest.approx(0.05)
    assert result.mean_accuracy.mean == pytest.approx((0.2 / 3) / 2)
    # log ratios log(20/10) and log(20/20): mean log(2)/2, a geometric-mean ratio of sqrt(2)
    assert result.efficiency.mean == pytest.approx(np.log(2) / 2)
    never = paired_comparison(X, baseline, [[0.5, 0.5, 0.5], [0.5, 0.6, 0.7]])
    assert never.efficiency is None and never.seeds_reaching == 1
