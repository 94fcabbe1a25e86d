"""Frustum points: hand-computed points (shared and per-cell depths, moved rays), and projecting
every point back to its cell."""

import numpy as np
import pytest
import torch

from renderlss.geometry import invert_pose, pose_matrix, project_to_image, transform_points
from renderlss.ops.frustum import frustum_points

# Front camera: camera z -> ego x, camera x -> ego -y, camera y -> ego -z.
FRONT = np.array(
    [[0.0, 0.0, 1.0, 1.5], [-1.0, 0.0, 0.0, 0.2], [0.0, -1.0, 0.0, 1.6], [0.0, 0.0, 0.0, 1.0]]
)
YAW_90 = np.array(
    [[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
# Resize by 0.5, then crop 5 columns and 10 rows off the top-left.
AUG = np.array([[0.5, 0.0, -5.0], [0.0, 0.5, -10.0], [0.0, 0.0, 1.0]])


def _t(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def test_hand_computed_point():
    # Cell (1, 2) at stride 4: augmented (10, 6) -> original (30, 32) -> camera ray
    # (-0.2, -0.08, 1); at depth 10 the camera point is (-2, -0.8, 10), ego (11.5, 2.2, 2.4).
    # The second camera adds a 90 degree BEV yaw: (x, y) -> (-y, x).
    cam2ego = _t(np.stack([FRONT, YAW_90 @ FRONT]))[None]
    img_aug = _t(np.stack([AUG, AUG]))[None]
    intrinsics = _t(np.stack([K, K]))[None]
    depths = torch.tensor([5.0, 10.0])
    points = frustum_points(depths, (3, 4), 4, img_aug, intrinsics, cam2ego)
    assert points.shape == (1, 2, 2, 3, 4, 3) and points.dtype == torch.float32
    torch.testing.assert_close(points[0, 0, 1, 1, 2], torch.tensor([11.5, 2.2, 2.4]))
    torch.testing.assert_close(points[0, 1, 1, 1, 2], torch.tensor([-2.2, 11.5, 2.4]))
    # At depth 5 the camera point is (-1, -0.4, 5).
    torch.testing.assert_close(points[0, 0, 0, 1, 2], torch.tensor([6.5, 1.2, 2.0]))


def _random_camera(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A camera with a rotated, flipped, scaled and cropped image and a random pose."""
    k = np.array([[rng.uniform(200, 400), 0, rng.uniform(300, 500)], [0, 0, 0], [0, 0, 1]])
    k[1, 1], k[1, 2] = k[0, 0] * rng.uniform(0.9, 1.1), rng.uniform(200, 300)
    angle, scale = rng.uniform(-0.2, 0.2), rng.uniform(0.4, 0.6)
    rotate = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    flip = np.array([[-1.0, 0, 400.0], [0, 1, 0], [0, 0, 1]])
    aug = flip @ rotate @ np.diag([scale, scale, 1.0]) + np.array(
        [[0, 0, -rng.uniform(0, 20)], [0, 0, -rng.uniform(0, 20)], [0, 0, 0]]
    )
    q = rng.normal(size=4)
    pose = pose_matrix(q / np.linalg.norm(q), rng.uniform(-3, 3, size=3))
    return k, aug, pose


def test_round_trip_to_feature_cells():
    rng = np.random.default_rng(0)
    cams = [[_random_camera(rng) for _ in range(3)] for _ in range(2)]  # B=2, N=3
    intrinsics = _t([[c[0] for c in row] for row in cams])
    img_aug = _t([[c[1] for c in row] for row in cams])
    cam2ego = _t([[c[2] for c in row] for row in cams])
    depths = torch.tensor([1.0, 7.5, 44.0])
    stride, rows, cols = 8, 5, 6
    points = frustum_points(depths, (rows, cols), stride, img_aug, intrinsics, cam2ego)
    assert points.shape == (2, 3, 3, rows, cols, 3)
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    for b in range(2):
        for n in range(3):
            k, aug, pose = cams[b][n]
            for d, depth in enumerate(depths.tolist()):
                ego = points[b, n, d].reshape(-1, 3).double().numpy()
                cam = transform_points(invert_pose(pose), ego)
                uv, z = project_to_image(cam, k)
                uv_aug = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ aug.T
                np.testing.assert_allclose(z, depth, rtol=1e-5)
                np.testing.assert_array_equal(np.floor(uv_aug[:, 0] / stride), j.reshape(-1))
                np.testing.assert_array_equal(np.floor(uv_aug[:, 1] / stride), i.reshape(-1))
                np.testing.assert_allclose(uv_aug[:, 0], (j.reshape(-1) + 0.5) * stride, atol=1e-3)
                np.testing.assert_allclose(uv_aug[:, 1], (i.reshape(-1) + 0.5) * stride, atol=1e-3)


def test_float32_under_autocast():
    cam2ego, img_aug, intrinsics = _t(FRONT)[None, None], _t(AUG)[None, None], _t(K)[None, None]
    depths = torch.linspace(1.0, 45.0, 88)
    plain = frustum_points(depths, (4, 5), 16, img_aug, intrinsics, cam2ego)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed = frustum_points(depths.bfloat16(), (4, 5), 16, img_aug, intrinsics, cam2ego)
    assert mixed.dtype == torch.float32
    # Only the bfloat16 rounding of the depth values themselves may differ.
    rounded = frustum_points(depths.bfloat16().float(), (4, 5), 16, img_aug, intrinsics, cam2ego)
    torch.testing.assert_close(mixed, rounded)
    assert not torch.equal(plain, rounded)


def _one_camera_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """img_aug, intrinsics, cam2ego [1, 2, ...] of the hand-computed test's two cameras."""
    cam2ego = _t(np.stack([FRONT, YAW_90 @ FRONT]))[None]
    return _t(np.stack([AUG, AUG]))[None], _t(np.stack([K, K]))[None], cam2ego


def test_per_cell_depths():
    img_aug, intrinsics, cam2ego = _one_camera_pair()
    depths = torch.full((1, 2, 2, 3, 4), 7.0)
    depths[0, 0, 1, 1, 2] = 10.0  # only cell (1, 2) of camera 0, second sample
    depths[0, 0, 0, 1, 2] = 5.0
    points = frustum_points(depths, (3, 4), 4, img_aug, intrinsics, cam2ego)
    assert points.shape == (1, 2, 2, 3, 4, 3)
    torch.testing.assert_close(points[0, 0, 1, 1, 2], torch.tensor([11.5, 2.2, 2.4]))
    torch.testing.assert_close(points[0, 0, 0, 1, 2], torch.tensor([6.5, 1.2, 2.0]))
    # Every other cell lies at 7 m, as the shared-depth frustum puts it.
    shared = frustum_points(torch.tensor([7.0]), (3, 4), 4, img_aug, intrinsics, cam2ego)
    assert torch.equal(points[0, 1], shared[0, 1].expand(2, 3, 4, 3))
    assert torch.equal(points[0, 0, :, 0], shared[0, 0, :, 0].expand(2, 4, 3))


def test_pixel_offsets_move_the_ray():
    img_aug, intrinsics, cam2ego = _one_camera_pair()
    depths = torch.tensor([5.0, 10.0])
    regular = frustum_points(depths, (3, 4), 4, img_aug, intrinsics, cam2ego)
    offsets = torch.zeros(1, 2, 3, 4, 2)
    assert torch.equal(
        frustum_points(depths, (3, 4), 4, img_aug, intrinsics, cam2ego, offsets), regular
    )
    # Cell (1, 2) moved by (+2, -2) pixels: augmented (12, 4) -> original (34, 28) -> camera
    # ray (-0.16, -0.12, 1); at depth 10 the camera point (-1.6, -1.2, 10) is ego
    # (11.5, 1.8, 2.8).
    offsets[0, 0, 1, 2] = torch.tensor([2.0, -2.0])
    moved = frustum_points(depths, (3, 4), 4, img_aug, intrinsics, cam2ego, offsets)
    torch.testing.assert_close(moved[0, 0, 1, 1, 2], torch.tensor([11.5, 1.8, 2.8]))
    unmoved = torch.ones(1, 2, 2, 3, 4, dtype=torch.bool)
    unmoved[0, 0, :, 1, 2] = False
    assert torch.equal(moved[unmoved], regular[unmoved])


def test_malformed_depths_and_offsets_are_rejected():
    img_aug, intrinsics, cam2ego = _one_camera_pair()
    with pytest.raises(ValueError, match="depths"):
        frustum_points(torch.ones(1, 2, 2, 3, 5), (3, 4), 4, img_aug, intrinsics, cam2ego)
    with pytest.raises(ValueError, match="pixel_offsets"):
        offsets = torch.zeros(1, 2, 4, 3, 2)
        frustum_points(torch.ones(2), (3, 4), 4, img_aug, intrinsics, cam2ego, offsets)
