"""Depth error by pixel group, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from renderlss.eval.depth_breakdown import band_groups, class_groups, group_errors


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
