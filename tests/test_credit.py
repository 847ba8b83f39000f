"""Credit assignment read-outs (primekit.rl.credit) on hand-built batches, by hand."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from primekit.rl.credit import (NO_ERROR_LABEL, UNKNOWN_ERROR_LABEL, bootstrap_snr, error_step_hits, expected_snr,
                                logit_cosine, logit_gradient_sq_norms, negative_update_weights, perfect_prm_q,
                                region_shares, scheme_advantages, scheme_credit, token_regions, uncertain_share)

# three responses of (up to) five tokens: steps 0 0 1 1 2; the last row has one padding token
STEPS = torch.tensor([[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [0, 1, 1, 2, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])


def test_regions_follow_the_first_error():
    errors = torch.tensor([1, NO_ERROR_LABEL, UNKNOWN_ERROR_LABEL])
    # 0 no error, 1 before, 2 erroneous step, 3 after, 4 unknown, -1 padding
    assert token_regions(STEPS, errors, MASK).tolist() == [[1, 1, 2, 2, 3], [0, 0, 0, 0, 0], [4, 4, 4, 4, -1]]
    with pytest.raises(ValueError):
        token_regions(STEPS, torch.tensor([1, -3, 0]), MASK)


def test_perfect_prm_spreads_the_penalty_over_the_labelled_step():
    q = perfect_prm_q(STEPS, torch.tensor([1, NO_ERROR_LABEL, 2]), MASK, penalty=3.0)
    assert q.tolist() == [[0, 0, -1.5, -1.5, 0], [0] * 5, [0, 0, 0, -3.0, 0]]


def _whiten(values):
    mean, sd = statistics.mean(values), statistics.stdev(values)  # Bessel-corrected, as the recipe
    return [(v - mean) / sd for v in values]


# one group of two three-token responses: right, then wrong at its step 1 (its middle token)
PAIR_MASK = torch.ones(2, 3)
PAIR_STEPS = torch.tensor([[0, 1, 2], [0, 1, 2]])
PAIR_ERRORS = torch.tensor([NO_ERROR_LABEL, 1])
PAIR_OUTCOMES = torch.tensor([1.0, 0.0])
PAIR_PROBS = torch.tensor([[0.9, 0.9, 0.9], [0.9, 0.5, 0.2]])
ALL_ROWS = torch.tensor([True, True])


def test_rloo_spreads_its_update_by_how_unlikely_each_token_is():
    advantages = scheme_advantages(None, PAIR_OUTCOMES, PAIR_MASK, 2, ALL_ROWS)
    # outcome RLOO: +5 / -5 on the last token, returns 5 5 5 / -5 -5 -5, whitened
    expected = _whiten([5, 5, 5, -5, -5, -5])
    assert advantages.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    weights = negative_update_weights(advantages, PAIR_PROBS, PAIR_MASK)
    regions = token_regions(PAIR_STEPS, PAIR_ERRORS, PAIR_MASK)
    # the wrong row's weights are |A| (0.1, 0.5, 0.8): shares by (1 - p) alone
    shares = region_shares(weights, regions)
    assert shares == pytest.approx([0.0, 0.1 / 1.4, 0.5 / 1.4, 0.8 / 1.4, 0.0])
    assert error_step_hits(weights, regions) == (0, 1)  # the least likely token is after the error


def test_perfect_prm_moves_the_update_onto_the_erroneous_step():
    q = perfect_prm_q(PAIR_STEPS, PAIR_ERRORS, PAIR_MASK, penalty=3.0)
    advantages = scheme_advantages(q, PAIR_OUTCOMES, PAIR_MASK, 2, ALL_ROWS)
    # process: q / max|return| = (0, -1, 0) on the wrong row; leave-one-out with n = 2:
    # 2 R - S, S = 0 + (-1/3), so 1/3 everywhere on the right row, (1/3, -5/3, 1/3) on the wrong one;
    # times 5, plus the outcome stream (+5 / -5 on the last token), then returns-to-go
    right = [5 / 3, 5 / 3, 5 / 3 + 5]
    wrong = [5 / 3, -25 / 3, 5 / 3 - 5]
    returns = [sum(right[t:]) for t in range(3)] + [sum(wrong[t:]) for t in range(3)]
    assert returns == pytest.approx([10, 25 / 3, 20 / 3, -10, -35 / 3, -10 / 3])
    expected = _whiten(returns)
    assert advantages.flatten().tolist() == pytest.approx(expected, abs=1e-5)
    weights = negative_update_weights(advantages, PAIR_PROBS, PAIR_MASK)
    pushed = [-expected[3] * 0.1, -expected[4] * 0.5, -expected[5] * 0.8]
    shares = region_shares(weights, token_regions(PAIR_STEPS, PAIR_ERRORS, PAIR_MASK))
    assert shares[2] == pytest.approx(pushed[1] / sum(pushed), abs=1e-5)
    assert shares[2] > 0.6 > 0.5 / 1.4  # more than RLOO's 0.36 on the erroneous step


def test_a_prm_that_says_nothing_is_rloo():
    rloo = scheme_advantages(None, PAIR_OUTCOMES, PAIR_MASK, 2, ALL_ROWS)
    silent = scheme_advantages(torch.zeros(2, 3), PAIR_OUTCOMES, PAIR_MASK, 2, ALL_ROWS)
    torch.testing.assert_close(silent, rloo)


def test_filtered_groups_get_no_update():
    outcomes = torch.tensor([1.0, 0.0, 1.0, 1.0])
    mask = torch.ones(4, 3)
    valid = torch.tensor([True, True, False, False])
    advantages = scheme_advantages(torch.zeros(4, 3), outcomes, mask, 2, valid)
    assert advantages[2:].abs().sum() == 0
    torch.testing.assert_close(advantages[:2], scheme_advantages(None, PAIR_OUTCOMES, PAIR_MASK, 2, ALL_ROWS))


def test_gradient_norm_of_a_token_by_hand():
    # pi = (0.5, 0.5), token 0 sampled: e - pi = (0.5, -0.5), squared norm 0.5
    assert float(logit_gradient_sq_norms(torch.tensor(0.5), torch.tensor(0.5))) == pytest.approx(0.5)
    # a certain token has no gradient
    assert float(logit_gradient_sq_norms(torch.tensor(1.0), torch.tensor(1.0))) == pytest.approx(0.0)


def test_uncertain_share_counts_only_tokens_known_to_be_right():
    regions = torch.tensor([[0, 0, 1, 2, 3]])
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0]])
    probs = torch.tensor([[0.5, 0.95, 0.5, 0.5, 0.5]])
    # right and uncertain: the first (no-error, p 0.5) and the third (before the error, p 0.5)
    assert uncertain_share(weights, regions, probs, threshold=0.9) == pytest.approx(4 / 20)


def test_logit_cosine_is_a_weighted_cosine_of_advantages():
    mask = torch.ones(1, 2)
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 1.0]])
    assert logit_cosine(a, b, torch.ones(1, 2), mask) == pytest.approx(4 / 5)
    assert logit_cosine(a, b, torch.tensor([[1.0, 0.0]]), mask) == pytest.approx(1.0)  # only token 0 counts
    assert math.isnan(logit_cosine(a, b, torch.zeros(1, 2), mask))


def test_snr_of_orthogonal_groups_equals_the_mini_batch_size():
    """Two groups with orthogonal unit gradients: the mean is (1/2, 1/2), squared norm 1/2; each
    coordinate of a mini-batch of m is Binomial(m, 1/2)/m, variance 1/(4m), so the noise is 1/(2m)
    and the SNR is m."""
    gram = torch.eye(2)
    assert expected_snr(gram, 4) == pytest.approx(4.0)
    assert bootstrap_snr(gram, 4, resamples=40000, seed=3) == pytest.approx(4.0, rel=0.05)
    assert bootstrap_snr(torch.ones(2, 2), 4) == math.inf            # identical groups: no noise
    assert bootstrap_snr(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), 4) == pytest.approx(0.0, abs=0.01)  # they cancel
    with pytest.raises(ValueError):
        bootstrap_snr(torch.ones(1, 1), 4)


def test_scheme_credit_of_the_perfect_prm_agrees_with_itself():
    q = perfect_prm_q(PAIR_STEPS, PAIR_ERRORS, PAIR_MASK)
    perfect = scheme_advantages(q, PAIR_OUTCOMES, PAIR_MASK, 2, ALL_ROWS)
    squares = torch.full((2, 3), 0.82)  # a two-way split 0.9 / 0.1: 0.81 + 0.01
    regions = token_regions(PAIR_STEPS, PAIR_ERRORS, PAIR_MASK)
    credit = scheme_credit("perfect", perfect, perfect, PAIR_PROBS, squares, regions, PAIR_MASK)
    assert credit.logit_cosine_with_perfect == pytest.approx(1.0)
    assert sum(credit.weight_shares) == pytest.approx(1.0) and sum(credit.gradient_shares) == pytest.approx(1.0)
    assert (credit.error_step_hits, credit.labelled_responses) == (1, 1)
