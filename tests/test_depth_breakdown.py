"""Depth error by pixel group, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from renderlss.eval.depth_breakdown import (
    band_groups,
    class_groups,
    end_voxel_groups,
    group_errors,
    value_at_depth,
)
from renderlss.geometry.grid import VoxelGrid


def test_group_errors_by_hand():
    target = np.array([2.0, 4.0, 10.0, 10.0])
    pred = np.array([1.0, 5.0, 10.0, 14.0])  # relative errors -0.5, +0.25, 0, +0.4
    opacity = np.array([1.0, 0.5, 1.0, 1.0])
    groups = band_groups(target, (0.0, 5.0, 10.0), "m")
    assert list(groups) == ["0-5 m", "5-10 m"]
    rows = group_errors(pred, target, opacity, groups)
    near, far = rows["0-5 m"], rows["5-10 m"]
    assert near["count"] == 2 and near["share"] == 0.5
    assert near["abs_rel"] == pytest.approx(0.375)
    assert near["median_signed"] == pytest.approx(-0.125)
    assert near["delta1"] == 0.0  # 2 is far off, and 5 / 4 = 1.25 is not below 1.25
    assert near["opacity"] == 0.75
    # The last band is closed: both 10 m targets are in it.
    assert far["count"] == 2 and far["delta1"] == 0.5
    assert near["contribution"] + far["contribution"] == pytest.approx(1.15 / 4)


def test_class_groups_skip_pixels_without_a_class_and_empty_groups_are_left_out():
    classes = np.array([3, -1, 3, 20])
    groups = class_groups(classes, ["a", "b", "c", "d"])
    assert list(groups) == ["d", "class 20"]
    assert groups["d"].tolist() == [True, False, True, False]
    rows = group_errors(
        np.ones(4), np.ones(4), np.ones(4), {**groups, "none": np.zeros(4, dtype=bool)}
    )
    assert list(rows) == ["d", "class 20"]


def test_label_at_the_rendered_surface_and_its_groups_by_hand():
    # Four 1 m voxels along x from x = 0: free (3) seen, free unseen, car (0), ignore (255).
    grid = VoxelGrid(point_cloud_range=(0.0, 0.0, 0.0, 4.0, 1.0, 1.0), voxel_size=(1.0, 1.0, 1.0))
    labels = np.array([3, 3, 0, 255]).reshape(4, 1, 1)
    seen = np.array([1, 0, 1, 1]).reshape(4, 1, 1)
    origins = np.tile([[0.0, 0.5, 0.5]], (5, 1))
    dirs = np.tile([[1.0, 0.0, 0.0]], (5, 1))
    z_per_t = np.full(5, 0.5)  # camera z grows by 0.5 m per metre along the ray
    depth = np.array([0.25, 0.75, 1.25, 1.75, 2.25])  # t = 0.5, 1.5, 2.5, 3.5, 4.5 m
    found = value_at_depth(origins, dirs, z_per_t, depth, labels, grid)
    assert found.tolist() == [3, 3, 0, 255, -1]
    found_seen = value_at_depth(origins, dirs, z_per_t, depth, seen, grid)
    groups = end_voxel_groups(found, found_seen, free_index=3, ignore_index=255)
    assert {k: np.flatnonzero(v).tolist() for k, v in groups.items()} == {
        "free, seen by the cameras": [0],
        "free, unseen": [1],
        "occupied": [2],
        "unknown": [3, 4],
    }
