"""LiDAR -> camera projection against hand-computed cases."""

import numpy as np
import pytest

from renderlss.geometry import nearest_per_pixel, pose_matrix, transform_points, yaw_to_quaternion
from renderlss.targets.lidar import (
    lidar_to_camera,
    load_lidar_points,
    outside_box,
    project_lidar_targets,
)

K = np.array([[10.0, 0, 4.0], [0, 10.0, 3.0], [0, 0, 1]])  # 8 x 6 image


def test_nearest_point_wins_and_targets_sit_at_pixel_centres():
    pts = np.array([[0.0, 0.0, 5.0], [0.01, 0.01, 2.0], [0.0, 0.0, 0.05], [100, 0, 1]])
    sem = np.array([1, 2, 3, 4], dtype=np.uint8)
    t = project_lidar_targets(pts, sem, K, width=8, height=6, min_depth=0.1)
    # point 3 is too near, point 4 projects outside; points 1 and 2 share pixel (3, 4)
    assert len(t) == 1
    assert t.depth[0] == pytest.approx(2.0) and t.semantics[0] == 2
    np.testing.assert_allclose(t.uv[0], [4.5, 3.5])


def test_nearest_per_pixel_brute_force():
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 4, size=(200, 2))
    depth = rng.uniform(1, 10, size=200)
    keep = nearest_per_pixel(uv, depth, 4, 4)
    pix = np.floor(uv).astype(int)
    for k in keep:
        same = np.all(pix == pix[k], axis=1)
        assert depth[k] == depth[same].min()
    assert len(keep) == len({tuple(p) for p in pix})


def test_chain_uses_each_sensors_own_ego_pose():
    # The car drives 1 m along global x between the LiDAR and the camera timestamps.
    lidar2ego = pose_matrix(yaw_to_quaternion(-np.pi / 2), [0.0, 0.0, 2.0])
    ego_lidar = pose_matrix([1, 0, 0, 0], [10.0, 0.0, 0.0])
    ego_cam = pose_matrix([1, 0, 0, 0], [11.0, 0.0, 0.0])
    # Camera looking forward along ego x at height 2 m: cam z = ego x, cam x = -ego y.
    cam_rot = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    cam2ego = np.eye(4)
    cam2ego[:3, :3] = cam_rot
    cam2ego[:3, 3] = [0.0, 0.0, 2.0]
    # A point 20 m ahead of the LiDAR-time ego, 1 m to the left, at 2 m height.
    point_lidar = transform_points(np.linalg.inv(lidar2ego), np.array([[20.0, 1.0, 2.0]]))
    cam = transform_points(lidar_to_camera(lidar2ego, ego_lidar, ego_cam, cam2ego), point_lidar)
    np.testing.assert_allclose(cam, [[-1.0, 0.0, 19.0]], atol=1e-9)


def test_ego_box_filter():
    pts = np.array([[0.0, 0.0, 1.0], [5.0, 0.0, 1.0]])
    np.testing.assert_array_equal(outside_box(pts, (-1, -1, 0, 3, 1, 2)), [False, True])


def test_corrupt_point_file_is_named(tmp_path):
    bad = tmp_path / "x.pcd.bin"
    np.arange(7, dtype=np.float32).tofile(bad)
    with pytest.raises(ValueError, match=r"x\.pcd\.bin.*whole number"):
        load_lidar_points(bad)
    with pytest.raises(FileNotFoundError, match="missing.pcd.bin"):
        load_lidar_points(tmp_path / "missing.pcd.bin")
