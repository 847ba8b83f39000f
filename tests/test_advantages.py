"""PRIME advantage math against values worked out by hand (responses right-padded)."""

from __future__ import annotations

import math

import pytest
import torch

from primekit.rl.advantages import (
    implicit_token_rewards,
    last_token_mask,
    masked_rloo,
    masked_whiten,
    normalize_token_rewards,
    outcome_on_last_token,
    prime_advantages,
    returns_to_go,
)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_last_token_mask():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1]])
    expected = [[False, True, False], [True, False, False], [False, False, False], [False, False, True]]
    assert last_token_mask(mask).tolist() == expected


def test_token_granularity_rewards_every_token_and_zeroes_padding():
    q = t([[1, 2, 3, 9], [4, 5, 9, 9]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # beta 0.5: row 0 -> 0.5, 1.0, 1.5 (the last token keeps its own) ; row 1 -> 2.0, 2.5
    expected = t([[0.5, 1.0, 1.5, 0], [2.0, 2.5, 0, 0]])
    assert torch.equal(implicit_token_rewards(q, mask, beta=0.5, granularity="token"), expected)


def test_whole_granularity_puts_sequence_reward_on_last_token():
    q = t([[1, 2, 3, 9], [4, 5, 9, 9]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # row 0: 0.5 * (1 + 2 + 3) = 3 at position 2 ; row 1: 0.5 * (4 + 5) = 4.5 at position 1
    expected = t([[0, 0, 3, 0], [0, 4.5, 0, 0]])
    assert torch.equal(implicit_token_rewards(q, mask, beta=0.5, granularity="whole"), expected)
    with pytest.raises(ValueError):
        implicit_token_rewards(q, mask, beta=0.5, granularity="step")


def test_batch_norm_divides_by_largest_reverse_cumsum():
    rewards = t([[1, -3, 2], [0.5, 0.5, 9]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # masked: [[1, -3, 2], [0.5, 0.5, 0]]; reverse cumsums: [0, -1, 2] and [1, 0.5, 0]
    # largest |.| = 2 (not max |r| = 3, nor the padded 9) -> divide by 2 + 1e-6
    expected = t([[1, -3, 2], [0.5, 0.5, 0]]) / 2.000001
    assert torch.allclose(normalize_token_rewards(rewards, mask, "batch_norm"), expected, atol=1e-12)
    assert torch.equal(normalize_token_rewards(rewards, mask, "none"), t([[1, -3, 2], [0.5, 0.5, 0]]))


def test_batch_norm_per_row_group_uses_each_groups_own_scale():
    rewards = t([[1, -3, 2], [0.5, 0.5, 9], [4, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    # largest |reverse cumsum| per row: 2, 1, 4. Rows 0 and 2 on one process (scale 4), row 1 alone (1)
    expected = t([[1 / 4.000001, -3 / 4.000001, 2 / 4.000001], [0.5 / 1.000001, 0.5 / 1.000001, 0], [1 / 1.000001, 0, 0]])
    expected[2, 0] = 4 / 4.000001
    scoped = normalize_token_rewards(rewards, mask, "batch_norm", row_groups=torch.tensor([0, 1, 0]))
    assert torch.allclose(scoped, expected, atol=1e-12)
    # one group for every row is the global scope
    one_group = normalize_token_rewards(rewards, mask, "batch_norm", row_groups=torch.tensor([7, 7, 7]))
    assert torch.equal(one_group, normalize_token_rewards(rewards, mask, "batch_norm"))


def test_rloo_outcome_is_one_minus_mean_of_others():
    acc = t([[1], [0], [0], [1]])
    mask = torch.ones(4, 1, dtype=torch.bool)
    # 1 - (0 + 0 + 1)/3 = 2/3 ; 0 - (1 + 0 + 1)/3 = -2/3
    expected = t([[2 / 3], [-2 / 3], [-2 / 3], [2 / 3]])
    assert torch.allclose(masked_rloo(acc, mask, group_size=4), expected)


def test_rloo_groups_do_not_mix():
    acc = t([[1], [0], [1], [1]])
    mask = torch.ones(4, 1, dtype=torch.bool)
    # group (1, 0): 1 - 0 = 1, 0 - 1 = -1 ; group (1, 1): 0, 0
    assert torch.allclose(masked_rloo(acc, mask, group_size=2), t([[1], [-1], [0], [0]]))


def test_rloo_process_two_tokens():
    rewards = t([[1, 3], [4, 0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # m_0 = (1 + 3)/2 = 2, m_1 = 4 (one valid token), S = 6, n = 2: R * 2 - 6
    # row 0: 2 - 6 = -4, 6 - 6 = 0 ; row 1: 8 - 6 = 2, padding 0
    assert torch.allclose(masked_rloo(rewards, mask, group_size=2), t([[-4, 0], [2, 0]]))


def test_rloo_empty_row_counts_zero_mean():
    rewards = t([[5, 7], [3, 3]])
    mask = torch.tensor([[1, 0], [0, 0]])
    # m_0 = 5, m_1 = 0 (empty row), S = 5: row 0 -> 5 * 2 - 5 = 5 ; row 1 has no valid entry
    assert torch.allclose(masked_rloo(rewards, mask, group_size=2), t([[5, 0], [0, 0]]))


def test_rloo_rejects_bad_groups():
    with pytest.raises(ValueError):
        masked_rloo(t([[1], [0]]), torch.ones(2, 1), group_size=1)
    with pytest.raises(ValueError):
        masked_rloo(t([[1], [0], [1]]), torch.ones(3, 1), group_size=2)


def test_outcome_on_last_token():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    rewards, reward_mask = outcome_on_last_token(torch.tensor([1, 0, 1]), mask)
    assert rewards.is_floating_point()
    assert rewards.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert reward_mask.tolist() == [[False, True, False], [True, False, False], [False, False, True]]


def test_returns_to_go_ignores_padding():
    rewards = t([[1, 2, 3, 100], [4, 5, 100, 100]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # gamma 1: row 0 -> 6, 5, 3 ; row 1 -> 9, 5
    assert torch.equal(returns_to_go(rewards, mask), t([[6, 5, 3, 0], [9, 5, 0, 0]]))
    # gamma 0.5: row 0 -> G2 = 3, G1 = 2 + 1.5 = 3.5, G0 = 1 + 1.75 = 2.75 ; row 1 -> G1 = 5, G0 = 4 + 2.5
    assert torch.equal(returns_to_go(rewards, mask, gamma=0.5), t([[2.75, 3.5, 3, 0], [6.5, 5, 0, 0]]))


def test_masked_whiten_hand_values():
    values = t([[1, 2, 3], [5, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # masked 1, 2, 3, 5: mean 2.75, squared deviations 3.0625 + 0.5625 + 0.0625 + 5.0625 = 8.75,
    # unbiased variance 8.75 / 3 = 35/12, std 1.7078251
    std = math.sqrt(35 / 12 + 1e-8)
    expected = t([[-1.75 / std, -0.75 / std, 0.25 / std], [2.25 / std, 0, 0]])
    assert torch.allclose(masked_whiten(values, mask), expected, atol=1e-9)
    assert abs(expected[0, 0].item() - (-1.0246951)) < 1e-6  # the hand-rounded value
    shifted = expected + 2.75 * mask
    assert torch.allclose(masked_whiten(values, mask, shift_mean=False), shifted, atol=1e-9)


def test_masked_whiten_constant_values_give_zeros_and_needs_two_entries():
    assert torch.equal(masked_whiten(t([[3, 3], [3, 3]]), torch.ones(2, 2)), t([[0, 0], [0, 0]]))
    with pytest.raises(ValueError):
        masked_whiten(t([[3, 1]]), torch.tensor([[1, 0]]))


# Worked example for prime_advantages: one group of n = 2, T = 3.
#   process rewards [[0.1, 0.2, 0.0], [0.3, 0.0, pad]], outcome acc [1, 0]
#   process RLOO: m_0 = 0.3/3 = 0.1, m_1 = 0.3/2 = 0.15, S = 0.25 -> R * 2 - 0.25
#     row 0: [-0.05, 0.15, -0.25] ; row 1: [0.35, -0.25, 0]
#   outcome RLOO on last tokens: row 0 (pos 2): 1 - 0 = 1 ; row 1 (pos 1): 0 - 1 = -1
#   total (coefs 5, 5): row 0 [-0.25, 0.75, -1.25 + 5 = 3.75] ; row 1 [1.75, -1.25 - 5 = -6.25, 0]
#   returns: row 0 [4.25, 4.5, 3.75] ; row 1 [-4.5, -6.25, 0]
#   whitening over 5 values: mean 1.75/5 = 0.35; deviations 3.9, 4.15, 3.4, -4.85, -6.6;
#   squares sum 15.21 + 17.2225 + 11.56 + 23.5225 + 43.56 = 111.075; var 111.075/4 = 27.76875
EXAMPLE_PROCESS = [[0.1, 0.2, 0.0], [0.3, 0.0, 0.0]]
EXAMPLE_MASK = [[1, 1, 1], [1, 1, 0]]
EXAMPLE_RETURNS = [[4.25, 4.5, 3.75], [-4.5, -6.25, 0.0]]
EXAMPLE_STD = math.sqrt(27.76875 + 1e-8)
EXAMPLE_ADVANTAGES = [[3.9 / EXAMPLE_STD, 4.15 / EXAMPLE_STD, 3.4 / EXAMPLE_STD],
                      [-4.85 / EXAMPLE_STD, -6.6 / EXAMPLE_STD, 0.0]]


def test_prime_advantages_worked_example():
    advantages, returns = prime_advantages(
        t(EXAMPLE_PROCESS), t([1, 0]), torch.tensor(EXAMPLE_MASK), group_size=2)
    assert torch.allclose(returns, t(EXAMPLE_RETURNS), atol=1e-12)
    assert torch.allclose(advantages, t(EXAMPLE_ADVANTAGES), atol=1e-9)
    assert abs(advantages[1, 1].item() - (-1.252465)) < 1e-6  # -6.6 / 5.269606


def test_prime_advantages_outcome_only_is_plain_rloo():
    # acc [1, 0, 0, 1], one group of 4, two tokens each; RLOO = ±2/3, times 5 = ±10/3 on the last
    # token; returns ±10/3 on both tokens; 8 values ±10/3: mean 0, unbiased var 8 (100/9) / 7,
    # so the advantages are ±(10/3) / sqrt(800/63) = ±sqrt(7/8)
    advantages, returns = prime_advantages(
        torch.zeros(4, 2), torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.ones(4, 2), group_size=4, process_coef=0.0)
    sign = torch.tensor([[1.0], [-1.0], [-1.0], [1.0]])
    assert torch.allclose(returns, sign * 10 / 3 * torch.ones(4, 2))
    assert torch.allclose(advantages, sign * math.sqrt(7 / 8) * torch.ones(4, 2), atol=1e-6)


def test_prime_advantages_all_equal_group_gives_zero_not_nan():
    advantages, _ = prime_advantages(torch.zeros(2, 2), torch.tensor([1.0, 1.0]), torch.ones(2, 2), 2,
                                     process_coef=0.0)
    assert torch.equal(advantages, torch.zeros(2, 2))


def test_filtered_rows_do_not_touch_the_statistics():
    # the worked example as group 1; group 2 holds wild values but is filtered out
    process = t(EXAMPLE_PROCESS + [[50.0, -80.0, 7.0], [3.0, 9.0, 1.0]])
    mask = torch.tensor(EXAMPLE_MASK + [[1, 1, 1], [1, 1, 1]])
    acc = t([1, 0, 1, 0])
    valid_rows = torch.tensor([True, True, False, False])
    advantages, returns = prime_advantages(process, acc, mask, group_size=2, valid_rows=valid_rows)
    assert torch.allclose(advantages[:2], t(EXAMPLE_ADVANTAGES), atol=1e-9)
    assert torch.equal(advantages[2:], torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(returns[2:], torch.zeros(2, 3, dtype=torch.float64))


def test_prime_advantages_everything_filtered_or_bad_arguments():
    process, mask, acc = t(EXAMPLE_PROCESS), torch.tensor(EXAMPLE_MASK), t([1, 0])
    advantages, _ = prime_advantages(process, acc, mask, 2, valid_rows=torch.tensor([False, False]))
    assert torch.equal(advantages, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError):  # a filter drops whole groups, never half of one
        prime_advantages(process, acc, mask, 2, valid_rows=torch.tensor([True, False]))
    with pytest.raises(ValueError):
        prime_advantages(process, acc, mask, 2, process_coef=0.0, outcome_coef=0.0)


def test_outcome_rloo_matches_naive_leave_one_out_on_random_groups():
    generator = torch.Generator().manual_seed(0)
    for group_size in (2, 3, 5):
        scores = torch.rand(4 * group_size, generator=generator, dtype=torch.float64)
        lengths = torch.randint(1, 6, (4 * group_size,), generator=generator)
        mask = torch.arange(6) < lengths.unsqueeze(-1)
        rewards, reward_mask = outcome_on_last_token(scores, mask)
        centred = masked_rloo(rewards, reward_mask, group_size)
        for i, score in enumerate(scores.tolist()):
            start = i - i % group_size
            others = [scores[j].item() for j in range(start, start + group_size) if j != i]
            assert abs(centred[i, lengths[i] - 1].item() - (score - sum(others) / len(others))) < 1e-12
        assert centred[~reward_mask].abs().max() == 0


def test_padding_content_never_changes_advantages():
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([3, 1, 4, 2, 4, 3])
    mask = torch.arange(4) < lengths.unsqueeze(-1)
    rewards = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    acc = t([1, 0, 0, 0, 1, 1])
    garbage = rewards.masked_fill(~mask, 1e6)
    clean_adv, clean_ret = prime_advantages(rewards, acc, mask, group_size=3)
    dirty_adv, dirty_ret = prime_advantages(garbage, acc, mask, group_size=3)
    assert torch.equal(clean_adv, dirty_adv) and torch.equal(clean_ret, dirty_ret)
