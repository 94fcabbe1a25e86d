"""Evaluation renders camera-z depth: a hand-built volume holding a wall at a known camera z,
rendered through the evaluation's whole-image and per-target paths, gives that z at every
pixel, not the distance along the (longer) off-axis rays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_NETWORK_OVERRIDES
from scipy.spatial.transform import Rotation

from renderlss.engine.build import build_model
from renderlss.engine.experiment import load_experiment
from renderlss.engine.full_image import camera_rays, render_camera_images, render_sample_rays

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FOCAL = 64, 32, 40.0  # horizontal half field of view 38.7 degrees
VOXEL = 0.4
WALL_X = 4.8  # ego x of the wall's near face; every voxel from there on is opaque
# The camera looks along ego +x (camera z = ego x): camera x = -ego y, camera y = -ego z.
CAMERA_TO_EGO = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def quaternion_wxyz(rotation: np.ndarray) -> list[float]:
    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    return [float(w), float(x), float(y), float(z)]


@pytest.fixture(scope="module")
def model():
    overrides = [
        *TINY_NETWORK_OVERRIDES,
        "model.backbone.depth=18",
        "data.grid.point_cloud_range=(-2.0,-4.0,-2.0,8.0,4.0,2.0)",
        f"data.grid.voxel_size=({VOXEL},{VOXEL},{VOXEL})",
        "render.step_fraction=0.05",
        "render.early_stop_eps=0.0",
    ]
    config = load_experiment(REPO / "configs/synthetic_demo.py", overrides)
    return build_model(config).eval()


def wall_predictions(model) -> dict[str, torch.Tensor]:
    """Density 1e4 / m in every voxel whose lower x face is at or beyond ``WALL_X``."""
    grid = model.grid
    shape = grid.shape
    lower_x = grid.point_cloud_range[0] + VOXEL * torch.arange(shape[0])
    density = torch.zeros(1, 1, *shape)
    density[0, 0, lower_x >= WALL_X - 1e-6] = 1e4
    logits = torch.zeros(1, 18, *shape)
    return dict(density=density, logits=logits)


def key_info() -> dict:
    identity = dict(ego2global_rotation=[1.0, 0.0, 0.0, 0.0], ego2global_translation=[0.0] * 3)
    camera = dict(
        identity,
        sensor2ego_rotation=quaternion_wxyz(CAMERA_TO_EGO),
        sensor2ego_translation=[0.0, 0.0, 0.0],
        cam_intrinsic=[[FOCAL, 0.0, WIDTH / 2], [0.0, FOCAL, HEIGHT / 2], [0.0, 0.0, 1.0]],
        width=WIDTH,
        height=HEIGHT,
    )
    return dict(identity, token="wall", cams=dict(CAM_FRONT=camera))


def expected_wall_z() -> float:
    """Camera z where the rendered surface sits: trilinear interpolation ramps the density
    from 0 at the last empty voxel's centre (WALL_X - VOXEL / 2) to 1e4 at the wall voxel's;
    at that steepness the ray is opaque within about 1 cm of the ramp's foot."""
    return WALL_X - VOXEL / 2 + 0.01


def test_whole_image_depth_is_camera_z(model):
    info = key_info()
    with torch.no_grad():
        (image,) = render_camera_images(
            model, wall_predictions(model), 0, info, ["CAM_FRONT"], np.eye(4), stride=4
        )
    assert image.depth.shape == (HEIGHT // 4, WIDTH // 4)
    assert (image.opacity > 0.999).all()
    np.testing.assert_allclose(image.depth, expected_wall_z(), atol=0.03)
    # The corner pixels' rays are 25 % longer than their camera z: a renderer returning the
    # distance along the ray would be off by about a metre there.
    rows, cols = np.meshgrid(np.arange(2, HEIGHT, 4), np.arange(2, WIDTH, 4), indexing="ij")
    ray_per_z = np.sqrt(
        1 + ((cols + 0.5 - WIDTH / 2) ** 2 + (rows + 0.5 - HEIGHT / 2) ** 2) / FOCAL**2
    )
    assert ray_per_z.max() > 1.25
    assert not np.allclose(image.depth, expected_wall_z() * ray_per_z, atol=0.3)


def test_per_target_depth_is_camera_z(model):
    # The LiDAR scoring path: one ray per target pixel through camera_rays.
    info = key_info()
    uv = np.array([[WIDTH / 2, HEIGHT / 2], [1.0, 1.0], [WIDTH - 1.0, HEIGHT - 2.0]])
    rays = camera_rays(uv, info["cams"]["CAM_FRONT"], info, np.eye(4))
    with torch.no_grad():
        depth = render_sample_rays(model, wall_predictions(model), 0, rays).depth[0].numpy()
    np.testing.assert_allclose(depth, expected_wall_z(), atol=0.03)
    ray_length = depth / rays["z_per_t"].numpy()  # z = t * z_per_t
    assert ray_length[1] > 1.3 * depth[1]  # the corner ray is far longer than its z
