"""The depth at which rays first enter predicted occupancy, by hand and across ray chunks."""

from __future__ import annotations

import pytest
import torch

from renderlss.eval import occupancy_depth
from renderlss.eval.occupancy_depth import first_occupied_depth
from renderlss.geometry.grid import VoxelGrid

LINE = VoxelGrid(point_cloud_range=(0.0, -0.5, -0.5, 20.0, 0.5, 0.5), voxel_size=(1.0,) * 3)


def line_rays(starts: list[float], z_per_t: list[float]) -> dict[str, torch.Tensor]:
    """Rays along +x from x = ``starts`` on the line grid's axis."""
    n = len(starts)
    origins = torch.zeros(1, n, 3)
    origins[0, :, 0] = torch.tensor(starts)
    dirs = torch.tensor([1.0, 0.0, 0.0]).expand(1, n, 3)
    return dict(origins=origins, dirs=dirs, z_per_t=torch.tensor([z_per_t]))


def test_first_occupied_depth_by_hand():
    occupied = torch.zeros(20, 1, 1, dtype=torch.bool)
    occupied[8] = True
    depth = first_occupied_depth(occupied, line_rays([0.0, 9.5], [0.5, 1.0]), LINE, fraction=0.1)
    # Ray 1 enters voxel 8 at t = 8 (camera z 4); ray 2 starts behind it and meets nothing
    # before its exit at x = 20 (the last sample inside, 10.4 m along it).
    assert depth.tolist() == pytest.approx([4.0, 10.4], abs=0.06)


def test_rays_marched_in_chunks_keep_their_order(monkeypatch):
    occupied = torch.zeros(20, 1, 1, dtype=torch.bool)
    occupied[[5, 12]] = True
    starts = [0.0, 6.5, 13.5, 2.0, 7.0]
    monkeypatch.setattr(occupancy_depth, "RAY_CHUNK", 2)
    depth = first_occupied_depth(occupied, line_rays(starts, [1.0] * 5), LINE, fraction=0.1)
    # Voxel 5 from x < 5, voxel 12 from 6.5 and 7, the exit from 13.5.
    assert depth.tolist() == pytest.approx([5.0, 5.5, 6.4, 3.0, 5.0], abs=0.06)
