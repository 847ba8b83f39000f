"""Sample efficiency read off accuracy-vs-responses curves, with bootstrap uncertainty over seeds.

PRIME's headline claim is a ratio: how many fewer generated responses it needs than outcome-only
RLOO to reach RLOO's final accuracy (2.5x in the paper). Here every training run is one curve,
accuracy at a shared grid of "responses generated"; runs of one variant differ by their seed.
The seed is the unit of replication:

* :func:`bootstrap_band`: a percentile band around a variant's seed-mean curve (a picture of the
  spread, not a test: a percentile bootstrap of a mean over 5 seeds covers well below 95%);
* :func:`efficiency_ratio`: the ratio on the seed-mean curves, and its percentile interval when
  both variants' seeds are resampled independently (RLOO's final accuracy, the target, moves with
  its resample, as it would in a repeated experiment);
* :func:`paired_t_interval` and :func:`paired_comparison`: the comparison the report states.
  Runs of one seed share their prompt order and sampling seed across arms, so the per-seed
  *differences* carry the comparison: their mean with a Student-t interval (n - 1 degrees of
  freedom), for the final accuracy, the mean accuracy over the run, and the log of the responses
  needed to reach the baseline's final mean accuracy (a geometric-mean ratio).

The target sits at the end of the baseline's curve, so a variant that is as good as the baseline
reaches it near the end of its run in some resamples and just after it in others. A curve may
therefore be extended along its last segment by up to ``extrapolate`` times the responses it was
run for (a still-rising curve crosses the target there); a curve that does not reach the target
even then gives a ratio of 0 (it needs more responses than were generated). Percentiles stay
meaningful, since any curve that does reach it has a larger ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from primekit.statistics import bootstrap_ci

__all__ = ["EfficiencyRatio", "PairedComparison", "PairedDifference", "bootstrap_band", "efficiency_ratio",
           "paired_comparison", "paired_t_interval", "responses_to_reach"]

#: How the report names the intervals of :func:`paired_t_interval`.
PAIRED_METHOD = "paired Student-t interval over seeds (per-seed differences, n - 1 degrees of freedom)"


def responses_to_reach(responses: Sequence[float], accuracy: Sequence[float], target: float,
                       extrapolate: float = 0.0) -> float | None:
    """First point where the curve reaches ``target``, interpolated linearly between evaluations;
    past the last evaluation, the last segment extended by at most ``extrapolate`` x the last x
    value; None if it never gets there."""
    if len(responses) != len(accuracy) or not responses:
        raise ValueError("responses_to_reach: the curve needs as many accuracies as x values (at least one)")
    if accuracy[0] >= target:
        return float(responses[0])
    for (x0, y0), (x1, y1) in zip(zip(responses, accuracy), zip(responses[1:], accuracy[1:])):
        if y1 >= target:
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0)
    if extrapolate > 0 and len(responses) > 1 and accuracy[-1] > accuracy[-2]:
        (x0, y0), (x1, y1) = (responses[-2], accuracy[-2]), (responses[-1], accuracy[-1])
        crossing = x1 + (x1 - x0) * (target - y1) / (y1 - y0)
        if crossing <= x1 * (1 + extrapolate):
            return crossing
    return None


def _curves(curves: Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(curves, dtype=np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError("expected one accuracy curve per seed, all on the same grid")
    return array


def bootstrap_band(curves: Sequence[Sequence[float]], *, confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed-mean curve and the percentile band of the mean over seed resamples: (mean, low, high),
    each point's band by :func:`primekit.statistics.bootstrap_ci` (one seed, so every point
    draws the same resamples of seeds)."""
    array = _curves(curves)
    bands = np.array([bootstrap_ci(column.tolist(), confidence=confidence, n_resamples=resamples, seed=seed)
                      for column in array.T])
    return array.mean(axis=0), bands[:, 0], bands[:, 1]


@dataclass(frozen=True)
class EfficiencyRatio:
    """Baseline responses / variant responses to reach the baseline's final mean accuracy."""

    target: float
    baseline_responses: float
    variant_responses: float | None
    ratio: float
    low: float
    high: float
    reached_fraction: float  # share of bootstrap resamples in which the variant reached the target


def _ratio(responses: Sequence[float], baseline: np.ndarray, variant: np.ndarray,
           extrapolate: float) -> tuple[float, float, float | None, float]:
    target = float(baseline[-1])
    needed_baseline = responses_to_reach(responses, baseline, target)
    needed_variant = responses_to_reach(responses, variant, target, extrapolate)
    if needed_variant is None:
        return target, needed_baseline, None, 0.0
    if needed_variant == 0:
        return target, needed_baseline, 0.0, float("inf")
    return target, needed_baseline, needed_variant, needed_baseline / needed_variant


def efficiency_ratio(responses: Sequence[float], baseline_curves: Sequence[Sequence[float]],
                     variant_curves: Sequence[Sequence[float]], *, confidence: float = 0.95,
                     resamples: int = 2000, seed: int = 0, extrapolate: float = 0.0) -> EfficiencyRatio:
    """Sample-efficiency ratio of a variant over the baseline, with a seed-bootstrap interval
    (``extrapolate``: see the module docstring)."""
    baseline, variant = _curves(baseline_curves), _curves(variant_curves)
    if baseline.shape[1] != len(responses) or variant.shape[1] != len(responses):
        raise ValueError("every curve must have one accuracy per x value")
    target, needed_baseline, needed_variant, ratio = _ratio(responses, baseline.mean(0), variant.mean(0), extrapolate)
    rng = np.random.default_rng(seed)
    ratios, reached = [], 0
    for _ in range(resamples):
        baseline_mean = baseline[rng.integers(0, len(baseline), len(baseline))].mean(0)
        variant_mean = variant[rng.integers(0, len(variant), len(variant))].mean(0)
        _, _, needed, value = _ratio(responses, baseline_mean, variant_mean, extrapolate)
        ratios.append(value)
        reached += needed is not None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.asarray(ratios), [tail, 100 - tail])
    return EfficiencyRatio(target, needed_baseline, needed_variant, ratio, float(low), float(high),
                           reached / resamples)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences (variant - baseline) and its Student-t interval."""

    mean: float
    low: float
    high: float
    seeds: int


def paired_t_interval(baseline: Sequence[float], variant: Sequence[float],
                      confidence: float = 0.95) -> PairedDifference:
    """Mean of ``variant[i] - baseline[i]`` over seeds i, with the Student-t interval of a mean
    (n - 1 degrees of freedom; the interval is exact for normal differences). One seed gives no
    interval (NaN edges); identical differences give a zero-width one."""
    from scipy.stats import t as student_t  # heavy: only the interval needs scipy

    if len(baseline) != len(variant) or len(baseline) == 0:
        raise ValueError("paired_t_interval: one value per seed in both arms, the same seeds, at least one")
    differences = np.asarray(variant, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    mean, count = float(differences.mean()), len(differences)
    if count < 2:
        return PairedDifference(mean, float("nan"), float("nan"), count)
    half = float(student_t.ppf(0.5 + confidence / 2, count - 1) * differences.std(ddof=1) / np.sqrt(count))
    return PairedDifference(mean, mean - half, mean + half, count)


@dataclass(frozen=True)
class PairedComparison:
    """A variant against the baseline, seed by seed (see the module docstring)."""

    final_accuracy: PairedDifference
    mean_accuracy: PairedDifference
    efficiency: PairedDifference | None  # of log(baseline / variant responses); None: a seed never reaches it
    target: float
    seeds_reaching: int


def paired_comparison(responses: Sequence[float], baseline_curves: Sequence[Sequence[float]],
                      variant_curves: Sequence[Sequence[float]], *, confidence: float = 0.95,
                      extrapolate: float = 0.0) -> PairedComparison:
    """Per-seed paired differences of a variant's curves from the baseline's (row i of both is
    seed i): final accuracy, mean accuracy over the evaluations, and the log ratio of the responses
    each needs to reach the baseline's final *mean* accuracy (the target; a curve that never
    reaches it, even extended by ``extrapolate``, leaves the ratio undefined)."""
    baseline, variant = _curves(baseline_curves), _curves(variant_curves)
    if baseline.shape != variant.shape or baseline.shape[1] != len(responses):
        raise ValueError("paired_comparison: both arms need one curve per seed, the same seeds, on the same grid")
    target = float(baseline[:, -1].mean())
    needed = [(responses_to_reach(responses, b, target, extrapolate),
               responses_to_reach(responses, v, target, extrapolate)) for b, v in zip(baseline, variant)]
    reaching = sum(b is not None and v is not None and b > 0 and v > 0 for b, v in needed)
    efficiency = None
    if reaching == len(needed):
        efficiency = paired_t_interval([np.log(v) for _, v in needed], [np.log(b) for b, _ in needed], confidence)
    return PairedComparison(paired_t_interval(baseline[:, -1], variant[:, -1], confidence),
                            paired_t_interval(baseline.mean(1), variant.mean(1), confidence), efficiency, target,
                            reaching)
