"""Pixel-sized dense depth parameters follow the output width: stated at 400 px, scaled and
rounded per image, or given in pixels."""

from __future__ import annotations

import numpy as np
import pytest

from renderlss.labels.dense_depth import (
    camera_dense_depth,
    dense_depth_config,
    resolved_completion_kernels,
    resolved_visibility_radius,
)
from renderlss.labels.depth_accumulation import AccumulatedCloud

IDENTITY = dict(rotation=[1.0, 0.0, 0.0, 0.0], translation=[0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("width", "radius", "kernels"),
    [(400, 6, (5,)), (800, 12, (9,)), (1600, 24, (17,)), (160, 2, (3,)), (100, 2, (3,))],
)
def test_default_pixel_parameters_scale_with_the_width(width, radius, kernels):
    # 6 px x width / 400, rounded half up (160 px: 2.4 -> 2, 100 px: 1.5 -> 2); kernels keep
    # odd: their half size 2 is scaled (800 px: 4 -> 9, 160 px: 0.8 -> 1 -> 3).
    config = dense_depth_config()
    assert resolved_visibility_radius(config, width) == radius
    assert resolved_completion_kernels(config, width) == kernels


def test_pixel_values_given_explicitly_are_kept():
    config = dense_depth_config(visibility_radius=3, completion_kernels=(7, 11))
    assert resolved_visibility_radius(config, 1600) == 3
    assert resolved_completion_kernels(config, 1600) == (7, 11)


def surrounded_point_camera(width: int, offset: int) -> tuple[AccumulatedCloud, dict]:
    """A far point (20 m) at the image centre with four near points (5 m) ``offset`` pixels
    away along both diagonals, seen by a camera at the global origin looking along +z."""
    height = width * 9 // 16
    focal, cu, cv = width / 2, width // 2, height // 2
    pixels = [(cu + 0.5, cv + 0.5, 20.0)]
    pixels += [
        (cu + 0.5 + du, cv + 0.5 + dv, 5.0) for du in (-offset, offset) for dv in (-offset, offset)
    ]
    points = np.array([((u - cu) / focal * z, (v - cv) / focal * z, z) for u, v, z in pixels])
    cloud = AccumulatedCloud(
        static_points=points,
        object_points=np.zeros((0, 3)),
        object_instance=np.zeros(0, dtype=np.int64),
        instance_tokens=[],
        ego_points=0,
    )
    cam_info = dict(
        width=width,
        height=height,
        timestamp=0,
        cam_intrinsic=np.array([[focal, 0, cu], [0, focal, cv], [0, 0, 1.0]]),
        **{f"{pose}_{k}": v for pose in ("ego2global", "sensor2ego") for k, v in IDENTITY.items()},
    )
    return cloud, cam_info


@pytest.mark.parametrize(
    ("width", "radius", "removed"),
    # Near points 9 px away: outside the 6 px window at 400 px, inside the 12 px one at 800 px;
    # 6 px given explicitly keeps the far point at 800 px too.
    [(400, None, 0), (800, None, 1), (800, 6, 0)],
)
def test_an_800_px_image_gets_the_doubled_visibility_window(width, radius, removed):
    cloud, cam_info = surrounded_point_camera(width, offset=9)
    config = dense_depth_config(visibility_radius=radius, dynamic=False)
    depth, _, stats = camera_dense_depth(cloud, {}, cam_info, config, "test")
    assert int((depth > 0).sum()) == 5 - removed
    assert stats.hidden_removed == removed
    centre = depth[cam_info["height"] // 2, width // 2]
    assert centre == (0.0 if removed else pytest.approx(20.0))
