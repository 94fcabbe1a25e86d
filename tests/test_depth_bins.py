"""Depth bins: hand-computed edges, centres, indices and targets in UD, LID and SID modes."""

from __future__ import annotations

import pytest
import torch

from renderlss.configuration import ConfigError, from_dict
from renderlss.models.config import DepthBinsConfig
from renderlss.models.depth_bins import (
    bin_centers,
    bin_edges,
    depth_to_bin,
    depth_to_index,
    index_to_depth,
    one_hot_depth_target,
    soft_depth_target,
)

DEFAULT = DepthBinsConfig()  # UD, [1, 45] m, 88 bins
LID = DepthBinsConfig(mode="LID", d_min=0.0, d_max=10.0, num_bins=4)
SID = DepthBinsConfig(mode="SID", d_min=1.0, d_max=16.0, num_bins=4)
SMALL_UD = DepthBinsConfig(mode="UD", d_min=1.0, d_max=3.0, num_bins=2)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_default_is_renderocc_half_metre_bins():
    edges = bin_edges(DEFAULT, dtype=torch.float64)
    assert DEFAULT.num_bins == 88 and edges.shape == (89,)
    assert edges[0] == 1.0 and edges[1] == 1.5 and edges[-1] == 45.0
    torch.testing.assert_close(edges[1:] - edges[:-1], torch.full((88,), 0.5, dtype=torch.float64))
    centres = bin_centers(DEFAULT, dtype=torch.float64)
    assert centres[0] == 1.25 and centres[-1] == 44.75
    # 10.3 m: index (10.3 - 1) / 0.5 = 18.6, bin 18 = [10.0, 10.5).
    torch.testing.assert_close(depth_to_index(t(10.3), DEFAULT), t(18.6))
    bins, valid = depth_to_bin(t(0.0, 0.99, 1.0, 10.3, 44.99, 45.0), DEFAULT)
    assert bins.tolist()[2:5] == [0, 18, 87]
    assert valid.tolist() == [False, False, True, True, True, False]


def test_lid_widths_grow_linearly():
    # edges = 10 * i (i + 1) / 20 = 0, 1, 3, 6, 10: widths 1, 2, 3, 4.
    torch.testing.assert_close(bin_edges(LID, torch.float64), t(0, 1, 3, 6, 10))
    # centres at index i + 1/2: (i + .5)(i + 1.5) / 2.
    torch.testing.assert_close(bin_centers(LID, torch.float64), t(0.375, 1.875, 4.375, 7.875))
    # 2 m: i = -1/2 + sqrt(1 + 4 * 20 * 2 / 10) / 2 = -1/2 + sqrt(17) / 2.
    torch.testing.assert_close(depth_to_index(t(2.0, 6.0), LID), t(1.5615528128088303, 3.0))
    assert depth_to_bin(t(2.0, 6.5, 9.99), LID)[0].tolist() == [1, 3, 3]


def test_sid_edges_are_log_uniform():
    torch.testing.assert_close(bin_edges(SID, torch.float64), t(1, 2, 4, 8, 16))
    torch.testing.assert_close(
        bin_centers(SID, torch.float64),
        t(1.4142135623730951, 2.8284271247461903, 5.656854249492381, 11.313708498984761),
    )
    torch.testing.assert_close(depth_to_index(t(3.0), SID), t(1.584962500721156))
    bins, valid = depth_to_bin(t(0.0, 3.0, 15.9, 16.0), SID)
    assert bins.tolist()[1:3] == [1, 3] and valid.tolist() == [False, True, True, False]


@pytest.mark.parametrize("bins", [DEFAULT, LID, SID, DepthBinsConfig(mode="LID", num_bins=80)])
def test_round_trips(bins: DepthBinsConfig):
    depth = torch.linspace(bins.d_min, bins.d_max, 97, dtype=torch.float64)
    torch.testing.assert_close(index_to_depth(depth_to_index(depth, bins), bins), depth)
    index = torch.linspace(0.0, bins.num_bins, 53, dtype=torch.float64)
    torch.testing.assert_close(depth_to_index(index_to_depth(index, bins), bins), index)
    # Every centre falls in its own bin; edges are increasing.
    centre_bins, valid = depth_to_bin(bin_centers(bins, torch.float64), bins)
    assert centre_bins.tolist() == list(range(bins.num_bins)) and bool(valid.all())
    assert bool((bin_edges(bins)[1:] > bin_edges(bins)[:-1]).all())


def test_one_hot_targets_and_out_of_range():
    depth = t(0.0, 1.2, 44.9, 50.0, 0.5)
    target, valid = one_hot_depth_target(depth, DEFAULT)
    assert target.shape == (5, 88)
    assert valid.tolist() == [False, True, True, False, False]
    assert target.sum(-1).tolist() == [0, 1, 1, 0, 0]
    assert target[1, 0] == 1 and target[2, 87] == 1
    clamped, valid = one_hot_depth_target(depth, DEFAULT, out_of_range="clamp")
    assert valid.tolist() == [False, True, True, True, True]
    assert clamped[3, 87] == 1 and clamped[4, 0] == 1 and clamped[0].sum() == 0
    with pytest.raises(ValueError, match="out_of_range"):
        one_hot_depth_target(depth, DEFAULT, out_of_range="drop")


def test_one_hot_keeps_map_layout():
    depth = torch.tensor([[[2.6, 0.0], [1.0, 2.99]]])  # [1, 2, 2]
    target, valid = one_hot_depth_target(depth, SMALL_UD)
    assert target.shape == (1, 2, 2, 2)
    assert target[0, 0, 0].tolist() == [0, 1] and target[0, 1, 0].tolist() == [1, 0]
    assert valid.tolist() == [[[True, False], [True, True]]]


def test_soft_targets_by_hand():
    # Centres 1.5 and 2.5 m (indices 0.5, 1.5).
    depth = t(2.0, 1.75, 1.2, 2.9, 0.0)
    target, valid = soft_depth_target(depth, SMALL_UD)
    expected = t(0.5, 0.5, 0.75, 0.25, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0).reshape(5, 2)
    torch.testing.assert_close(target, expected)
    assert valid.tolist() == [True, True, True, True, False]
    # Between the first and last centre the expected index is the depth's index.
    inner = torch.linspace(1.5, 44.75, 41, dtype=torch.float64)
    soft, _ = soft_depth_target(inner, DEFAULT)
    expected_index = (soft * (torch.arange(88, dtype=torch.float64) + 0.5)).sum(-1)
    torch.testing.assert_close(expected_index, depth_to_index(inner, DEFAULT))


def test_config_validation():
    with pytest.raises(ValueError, match="SID"):
        from_dict(DepthBinsConfig, {"mode": "SID", "d_min": 0.0}, "depth.bins")
    with pytest.raises(ValueError, match="d_max"):
        from_dict(DepthBinsConfig, {"d_min": 5.0, "d_max": 5.0}, "depth.bins")
    with pytest.raises(ConfigError, match="depth.bins.mode"):
        from_dict(DepthBinsConfig, {"mode": "log"}, "depth.bins")
    with pytest.raises(ConfigError, match="did you mean 'depth.bins.num_bins'"):
        from_dict(DepthBinsConfig, {"num_bin": 10}, "depth.bins")
