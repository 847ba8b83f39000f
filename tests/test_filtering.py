"""Accuracy-band / truncation filtering and group selection, checked by hand."""

from __future__ import annotations

import pytest
import torch

from primekit.rl.filtering import (
    accuracy_band_mask,
    filter_groups,
    filter_truncated,
    group_accuracy,
    select_groups,
)


def test_group_accuracy():
    acc = torch.tensor([1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    assert group_accuracy(acc, 4).tolist() == [0.5, 1.0, 0.0]


def test_band_edges_are_inclusive():
    # groups of 5: 1/5 = 0.2 keep, 4/5 = 0.8 keep, 0 drop, 1 drop, 2/5 keep
    acc = torch.tensor([1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    assert accuracy_band_mask(acc, 5).tolist() == [True, True, False, False, True]


def test_band_edges_with_float_rounding():
    # 2/10 and 8/10 sit on the edges; 3/16 = 0.1875 and 13/16 = 0.8125 fall just outside
    def group(correct: int, size: int) -> list[int]:
        return [1] * correct + [0] * (size - correct)

    assert accuracy_band_mask(torch.tensor(group(2, 10) + group(8, 10)), 10).tolist() == [True, True]
    assert accuracy_band_mask(torch.tensor(group(3, 16) + group(13, 16)), 16).tolist() == [False, False]
    with pytest.raises(ValueError):
        accuracy_band_mask(torch.tensor([1, 0]), 2, low=0.9, high=0.1)


def test_one_truncated_response_drops_its_group():
    truncated = torch.tensor([False, False, True, False, False, False])
    assert filter_truncated(truncated, 2).tolist() == [True, False, True]


def test_select_groups_prefers_passing_in_original_order():
    passing = torch.tensor([False, True, False, True, True])
    indices, weights = select_groups(passing, 2)
    assert indices.tolist() == [1, 3] and weights.tolist() == [1.0, 1.0]
    # 3 pass, 4 needed: the first failing group (0) fills the batch with weight 0
    indices, weights = select_groups(passing, 4)
    assert indices.tolist() == [1, 3, 4, 0] and weights.tolist() == [1.0, 1.0, 1.0, 0.0]
    _, weights = select_groups(passing, 4, train_on_failing=True)
    assert weights.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_select_groups_when_nothing_passes_or_bad_count():
    indices, weights = select_groups(torch.tensor([False, False, False]), 2)
    assert indices.tolist() == [0, 1] and weights.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        select_groups(torch.tensor([True, False]), 3)
    with pytest.raises(ValueError):
        select_groups(torch.tensor([True, False]), 0)


def test_filter_groups_end_to_end():
    # 5 groups of 2: [1,0] 0.5 pass ; [1,1] 1.0 outside band ; [0,1] in band but truncated ;
    #                [0,1] pass ; [0,0] 0.0 outside band
    acc = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 0, 0])
    truncated = torch.tensor([False, False, False, False, True, False, False, False, False, False])
    selection = filter_groups(acc, group_size=2, n_keep=3, truncated=truncated)
    # passing = [T, F, F, T, F] -> keep 0, 3, then the first failing group 1 at weight 0
    assert selection.group_indices.tolist() == [0, 3, 1]
    assert selection.group_weights.tolist() == [1.0, 1.0, 0.0]
    assert selection.row_indices.tolist() == [0, 1, 6, 7, 2, 3]
    assert selection.row_weights.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    stats = selection.stats
    assert (stats.num_groups, stats.num_outside_band, stats.num_truncated) == (5, 2, 1)
    assert (stats.num_passing, stats.num_kept, stats.num_kept_failing) == (2, 3, 1)
    metrics = stats.as_metrics()
    assert metrics["filter/outside_band"] == 0.4 and metrics["filter/truncated"] == 0.2
    assert metrics["filter/passing"] == 0.4 and abs(metrics["filter/kept_failing"] - 1 / 3) < 1e-12


def test_filter_groups_without_filters_is_downsampling():
    acc = torch.tensor([1, 1, 0, 0, 1, 0])
    selection = filter_groups(acc, group_size=2, n_keep=2, filter_accuracy=False)
    assert selection.group_indices.tolist() == [0, 1]
    assert selection.group_weights.tolist() == [1.0, 1.0]


def test_filter_groups_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        filter_groups(torch.tensor([1, 0, 1, 0]), 2, 1, truncated=torch.tensor([False, False]))
    with pytest.raises(ValueError):
        filter_groups(torch.tensor([1, 0, 1]), 2, 1)


def test_select_groups_order_is_deterministic_on_large_batches():
    passing = torch.rand(5000, generator=torch.Generator().manual_seed(0)) > 0.5
    indices, _ = select_groups(passing, 5000)
    expected = torch.cat([torch.nonzero(passing).flatten(), torch.nonzero(~passing).flatten()])
    assert torch.equal(indices, expected)
