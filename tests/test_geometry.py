"""Geometry helpers against pyquaternion and hand-computed cases."""

import numpy as np
import pytest
from pyquaternion import Quaternion

from renderlss.geometry import (
    invert_pose,
    matrix_to_quaternion,
    pose_matrix,
    project_to_image,
    quaternion_to_matrix,
    transform_points,
    unproject_pixels,
    yaw_of_quaternion,
    yaw_to_quaternion,
)
from renderlss.geometry.grid import VoxelGrid


@pytest.mark.parametrize("seed", range(5))
def test_quaternion_matches_pyquaternion(seed):
    q = Quaternion.random() if seed else Quaternion(axis=[0, 0, 1], angle=np.pi)
    np.testing.assert_allclose(quaternion_to_matrix(q.elements), q.rotation_matrix, atol=1e-12)
    back = matrix_to_quaternion(q.rotation_matrix)
    assert abs(abs(np.dot(back, q.elements)) - 1) < 1e-9


def test_non_unit_quaternion_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="calibrated_sensor abc.rotation.*not unit"):
        quaternion_to_matrix([1.0, 0.5, 0, 0], "calibrated_sensor abc.rotation")
    with pytest.raises(ValueError, match="finite"):
        quaternion_to_matrix([np.nan, 0, 0, 0])


def test_yaw_round_trip_and_lidar_axis():
    assert yaw_of_quaternion(yaw_to_quaternion(0.3)) == pytest.approx(0.3)
    # A LIDAR_TOP-like mount rotated -90 deg about z: its x axis points to the car's right.
    rot = quaternion_to_matrix(yaw_to_quaternion(-np.pi / 2))
    np.testing.assert_allclose(rot @ [1, 0, 0], [0, -1, 0], atol=1e-12)


def test_pose_inverse_and_transform_by_hand():
    pose = pose_matrix(yaw_to_quaternion(np.pi / 2), [1.0, 2.0, 3.0])
    # x axis -> y axis, then translate.
    np.testing.assert_allclose(transform_points(pose, np.array([[1.0, 0, 0]])), [[1, 3, 3]])
    np.testing.assert_allclose(invert_pose(pose) @ pose, np.eye(4), atol=1e-12)


def test_projection_round_trip_and_pixel_convention():
    k = np.array([[100.0, 0, 50], [0, 100.0, 25], [0, 0, 1]])
    uv, depth = project_to_image(np.array([[1.0, -0.5, 10.0]]), k)
    np.testing.assert_allclose(uv, [[60.0, 20.0]])
    assert depth[0] == 10.0
    np.testing.assert_allclose(unproject_pixels(uv, depth, k), [[1.0, -0.5, 10.0]])


def test_grid_floor_not_truncation():
    grid = VoxelGrid((-2.0, -2.0, -1.0, 2.0, 2.0, 1.0), (0.5, 0.5, 0.5))
    assert grid.shape == (8, 8, 4)
    idx, valid = grid.point_to_index(np.array([[-2.2, 0.0, 0.0], [-1.99, 1.99, -0.01]]))
    assert not valid[0]  # truncation toward zero would have put it in voxel 0
    np.testing.assert_array_equal(idx[1], [0, 7, 1])
    np.testing.assert_allclose(grid.voxel_centers()[0, 0, 0], [-1.75, -1.75, -0.75])


def test_grid_rejects_partial_voxels():
    with pytest.raises(ValueError, match="whole number"):
        VoxelGrid((0, 0, 0, 1.0, 1.0, 1.0), (0.3, 0.3, 0.3)).validate("grid")
