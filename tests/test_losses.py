"""PRM losses and reward metrics against values worked out by hand.

Handy exact values: sigma(0) = 1/2, sigma(ln 3) = 3/4, sigma(-ln 3) = 1/4, sigma(ln 9) = 9/10.
"""

from __future__ import annotations

import math

import pytest
import torch

from primekit.prm.losses import (
    ce_loss,
    dpo_loss,
    kl_pair_indices,
    kto_loss,
    kto_reference_point,
    nca_loss,
    pairwise_accuracy,
    reward_accuracy,
    sequence_rewards,
)

LN2, LN3 = math.log(2), math.log(3)


def close(actual: torch.Tensor, expected: float, tol: float = 1e-6) -> bool:
    return abs(float(torch.as_tensor(actual).detach()) - expected) < tol


def test_sequence_rewards_sums_valid_tokens_only():
    q = torch.tensor([[1.0, 2.0, 3.0, 50.0], [4.0, -1.0, 70.0, 80.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # 0.05 * (1 + 2 + 3) = 0.3 ; 0.05 * (4 - 1) = 0.15 ; padding values ignored
    assert torch.allclose(sequence_rewards(q, mask, beta=0.05), torch.tensor([0.3, 0.15]))


def test_ce_loss_hand_values():
    # r = 0, l = 1: -log(1/2) = ln 2 ; r = ln 3, l = 0: -log(1 - 3/4) = ln 4 = 2 ln 2 ; mean 1.5 ln 2
    loss = ce_loss(torch.tensor([0.0, LN3]), torch.tensor([1, 0]))
    assert close(loss, 1.5 * LN2)


def test_ce_loss_is_finite_for_confidently_wrong_reward():
    # r = 200, l = 0: -log(1 - sigma(200)) = softplus(200) = 200 (+ e^-200); naive log(0) would be inf
    rewards = torch.tensor([200.0], requires_grad=True)
    loss = ce_loss(rewards, torch.tensor([0.0]))
    loss.backward()
    assert close(loss, 200.0, tol=1e-3)
    assert close(rewards.grad[0], 1.0)  # d softplus(r)/dr = sigma(200) = 1


def test_dpo_loss_zero_margin_is_log2():
    assert close(dpo_loss(torch.tensor([0.7, -2.0]), torch.tensor([0.7, -2.0])), LN2)


def test_dpo_loss_hand_values():
    # margins ln 3 and -ln 3: -log(3/4) = ln(4/3), -log(1/4) = ln 4; mean
    loss = dpo_loss(torch.tensor([LN3, 0.0]), torch.tensor([0.0, LN3]))
    assert close(loss, (math.log(4 / 3) + math.log(4)) / 2)


def test_nca_loss_hand_values():
    # r_w = ln 3, r_l = -ln 3:
    #   -log sigma(ln 3) = ln(4/3); -0.5 log sigma(-ln 3) = 0.5 ln 4 = ln 2; -0.5 log sigma(ln 3) = 0.5 ln(4/3)
    loss = nca_loss(torch.tensor([LN3]), torch.tensor([-LN3]))
    assert close(loss, 1.5 * math.log(4 / 3) + LN2)
    # both 0: ln 2 + 0.5 ln 2 + 0.5 ln 2 = 2 ln 2
    assert close(nca_loss(torch.tensor([0.0]), torch.tensor([0.0])), 2 * LN2)


def test_kto_loss_without_reference_point():
    # desirable r = ln 3: 1 - 3/4 = 1/4 ; undesirable r = 0: 1 - sigma(0) = 1/2 ; mean 3/8
    loss = kto_loss(torch.tensor([LN3, 0.0]), torch.tensor([True, False]), reference_point=0.0)
    assert close(loss, 0.375)


def test_kto_loss_with_reference_point():
    # z0 = ln 3. desirable r = ln 3: 1 - sigma(0) = 1/2 ; undesirable r = -ln 3: 1 - sigma(ln 3 + ln 3) = 1 - 9/10
    loss = kto_loss(torch.tensor([LN3, -LN3]), torch.tensor([1, 0]), reference_point=torch.tensor(LN3))
    assert close(loss, (0.5 + 0.1) / 2)


def test_kto_loss_clamps_negative_reference_point_and_weights():
    rewards, labels = torch.tensor([LN3, 0.0]), torch.tensor([True, False])
    # z0 = -5 is clamped to 0, so this equals the z0 = 0 case: 3/8
    assert close(kto_loss(rewards, labels, reference_point=-5.0), 0.375)
    # weights 2 (desirable) and 1: (2 * 1/4 + 1 * 1/2) / 2 = 1/2 -- a plain mean, like TRL
    assert close(kto_loss(rewards, labels, 0.0, desirable_weight=2.0, undesirable_weight=1.0), 0.5)


def test_kto_loss_sends_no_gradient_into_reference_point():
    z0 = torch.tensor(0.3, requires_grad=True)
    rewards = torch.tensor([0.1, 0.2], requires_grad=True)
    kto_loss(rewards, torch.tensor([1, 0]), z0).backward()
    assert z0.grad is None
    assert rewards.grad is not None


def test_kto_reference_point_is_clamped_detached_beta_scaled_mean():
    policy = torch.tensor([-1.0, -1.0, -4.0], requires_grad=True)
    ref = torch.tensor([-3.0, -2.0, -2.0])
    # log-ratios 2, 1, -2 -> mean 1/3 -> times beta 0.1 = 1/30
    z0 = kto_reference_point(policy, ref, beta=0.1)
    assert close(z0, 1 / 30)
    assert not z0.requires_grad
    # log-ratios -1, -1 -> mean -1 -> clamped to 0
    assert float(kto_reference_point(torch.tensor([-2.0, -2.0]), torch.tensor([-1.0, -1.0]), 0.1)) == 0.0


def test_kl_pair_indices_shift_by_one():
    assert kl_pair_indices(4).tolist() == [3, 0, 1, 2]
    with pytest.raises(ValueError):
        kl_pair_indices(1)


def test_reward_accuracy_uses_sign():
    # predictions r > 0: T F F T ; labels T F T F ; agree on the first two -> 1/2 (r = 0 predicts wrong)
    acc = reward_accuracy(torch.tensor([0.5, -0.2, 0.0, 0.1]), torch.tensor([1, 0, 1, 0]))
    assert close(acc, 0.5)


def test_pairwise_accuracy_within_groups():
    rewards = torch.tensor([3.0, 1.0, 2.0, 0.0, 1.0, 1.0, 5.0, 5.0])
    labels = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0])
    # group 1 mixed pairs: (0,1) r 3>1 agree; (0,2) 3>2 agree; (1,3) 1>0 but label 0<1 disagree;
    #   (2,3) 2>0 but 0<1 disagree -> 2 of 4
    assert close(pairwise_accuracy(rewards[:4], labels[:4], group_size=4), 0.5)
    # group 2 mixed pairs: (0,1) reward tie -> 1/2; (0,2) and (0,3) 1 < 5 disagree -> 0.5 of 3
    # pooled: (2 + 0.5) / (4 + 3) = 5/14
    assert close(pairwise_accuracy(rewards, labels, group_size=4), 5 / 14)


def test_pairwise_accuracy_whole_batch_and_no_mixed_pairs():
    assert close(pairwise_accuracy(torch.tensor([1.0, 0.0]), torch.tensor([1, 0])), 1.0)
    assert math.isnan(float(pairwise_accuracy(torch.tensor([1.0, 0.0]), torch.tensor([1, 1]))))
    with pytest.raises(ValueError):
        pairwise_accuracy(torch.zeros(5), torch.zeros(5), group_size=2)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        ce_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError):
        dpo_loss(torch.zeros(3), torch.zeros(2))
