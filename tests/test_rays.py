"""Camera rays: hand-computed rays, broadcasting, and points along rays projecting back."""

import math

import numpy as np
import pytest
import torch

from renderlss.geometry import invert_pose, pose_matrix, project_to_image, transform_points
from renderlss.ops.rays import cell_centers, image_rays, pixel_rays

# Front camera (camera z -> ego x, x -> -y, y -> -z) at (1.5, 0.2, 1.6).
FRONT = torch.tensor(
    [[0.0, 0.0, 1.0, 1.5], [-1.0, 0.0, 0.0, 0.2], [0.0, -1.0, 0.0, 1.6], [0.0, 0.0, 0.0, 1.0]],
    dtype=torch.float64,
)
K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
AUG = torch.tensor([[0.5, 0.0, -5.0], [0.0, 0.5, -10.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_cell_centers_hand_values():
    expected = torch.tensor(
        [[[2.0, 2.0], [6.0, 2.0], [10.0, 2.0]], [[2.0, 6.0], [6.0, 6.0], [10.0, 6.0]]]
    )
    torch.testing.assert_close(cell_centers(2, 3, 4), expected)
    torch.testing.assert_close(cell_centers(1, 2, 1), torch.tensor([[[0.5, 0.5], [1.5, 0.5]]]))


def test_hand_computed_ray_passes_through_ego_point():
    # Augmented (10, 6) -> original (30, 32) -> camera direction (-0.2, -0.08, 1)
    # -> ego direction (1, 0.2, 0.08); the ego point (11.5, 2.2, 2.4) is at camera z 10.
    rays = pixel_rays(torch.tensor([10.0, 6.0]), AUG, K, FRONT)
    norm = math.sqrt(1.0 + 0.04 + 0.0064)
    torch.testing.assert_close(rays.origins, torch.tensor([1.5, 0.2, 1.6]))
    torch.testing.assert_close(rays.directions, torch.tensor([1.0, 0.2, 0.08]) / norm)
    torch.testing.assert_close(rays.z_per_t, torch.tensor(1.0 / norm))
    t = 10.0 / float(rays.z_per_t)  # distance along the ray to camera z = 10
    torch.testing.assert_close(
        rays.origins + t * rays.directions, torch.tensor([11.5, 2.2, 2.4]), rtol=0, atol=1e-5
    )
    # The principal point looks straight ahead: z_per_t = 1. It is at augmented (20, 10).
    centre = pixel_rays(torch.tensor([20.0, 10.0]), AUG, K, FRONT)
    torch.testing.assert_close(centre.directions, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(centre.z_per_t, torch.tensor(1.0))


def test_broadcasting_over_cameras_and_rays():
    poses = torch.stack([FRONT, FRONT.clone()])
    poses[1, :3, 3] = torch.tensor([0.0, 0.0, 5.0])
    uv = torch.rand(1, 2, 7, 2, generator=torch.Generator().manual_seed(0)) * 30
    rays = pixel_rays(uv, AUG[None, None, None], K[None, None, None], poses[None, :, None])
    assert rays.origins.shape == (1, 2, 7, 3) and rays.z_per_t.shape == (1, 2, 7)
    assert rays.directions.dtype == torch.float32
    torch.testing.assert_close(rays.origins[0, 1], torch.tensor([0.0, 0.0, 5.0]).expand(7, 3))
    single = pixel_rays(uv[0, 1, 3], AUG, K, poses[1])
    torch.testing.assert_close(rays.directions[0, 1, 3], single.directions)
    torch.testing.assert_close(rays.directions.norm(dim=-1), torch.ones(1, 2, 7))


def test_image_rays_project_back_to_cell_centres():
    rng = np.random.default_rng(1)
    q = rng.normal(size=4)
    pose = pose_matrix(q / np.linalg.norm(q), [0.5, -1.0, 2.0])
    k = np.array([[300.0, 0.0, 410.0], [0.0, 310.0, 230.0], [0.0, 0.0, 1.0]])
    angle = 0.1
    aug = np.array(
        [[np.cos(angle), -np.sin(angle), -3.0], [np.sin(angle), np.cos(angle), 7.0], [0, 0, 1]]
    ) @ np.diag([0.5, 0.5, 1.0])
    rows, cols, stride = 4, 6, 16
    f64 = torch.float64
    rays = image_rays(
        rows,
        cols,
        stride,
        torch.tensor(aug, dtype=f64)[None],
        torch.tensor(k, dtype=f64)[None],
        torch.tensor(pose, dtype=f64)[None],
    )
    assert rays.origins.shape == (1, rows, cols, 3)
    t = 12.0
    ego = (rays.origins + t * rays.directions)[0].reshape(-1, 3).double().numpy()
    uv, z = project_to_image(transform_points(invert_pose(pose), ego), k)
    uv_aug = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ aug.T
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    np.testing.assert_allclose(uv_aug[:, 0], (j.reshape(-1) + 0.5) * stride, atol=1e-3)
    np.testing.assert_allclose(uv_aug[:, 1], (i.reshape(-1) + 0.5) * stride, atol=1e-3)
    np.testing.assert_allclose(z, t * rays.z_per_t[0].reshape(-1).numpy(), rtol=1e-5)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="intrinsics"):
        pixel_rays(torch.zeros(2), AUG, K[:2], FRONT)
    with pytest.raises(ValueError, match="cam2ego"):
        pixel_rays(torch.zeros(2), AUG, K, FRONT[:3])
    with pytest.raises(ValueError, match="uv"):
        pixel_rays(torch.zeros(3), AUG, K, FRONT)
