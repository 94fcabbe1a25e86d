"""Spherical range images against hand-computed pixels, the synthetic LiDAR's rays (one per
pixel), and the LiDAR-side hidden-point test on hand-built sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from renderlss.labels.box_motion import Box, box_pose
from renderlss.labels.depth_accumulation import LidarFrame, accumulate_frames, objects_moved_to
from renderlss.labels.range_image import (
    RangeImageConfig,
    pixel_of,
    points_from_coordinates,
    range_image,
    range_image_points,
    spherical_coordinates,
)
from renderlss.labels.visibility import (
    LidarVisibilityConfig,
    farthest_in_window,
    hidden_behind_range_image,
)
from renderlss.synthetic import rig
from renderlss.synthetic.lidar_range_image import synthetic_range_image_config
from renderlss.vis.colormaps import depth_to_rgb, label_palette
from renderlss.vis.range_image_panel import range_image_panel

# 4 rows of 10 degrees from +10 down to -30, 8 columns of 45 degrees.
SMALL = RangeImageConfig(fov_up_deg=10.0, fov_down_deg=30.0, rows=4, columns=8)
NO_EGO = (-0.1, -0.1, -0.1, 0.1, 0.1, 0.1)


def direction(azimuth_deg: float, elevation_deg: float, distance: float = 1.0) -> np.ndarray:
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return distance * np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def test_pixels_by_hand_including_the_seam():
    points = np.array(
        [
            [1.0, 0.0, 0.0],  # azimuth 0: u = 4, elevation 0: v = (1 - 30/40) * 4 = 1
            [0.0, 2.0, 0.0],  # azimuth +90: u = 0.5 * (1 - 0.5) * 8 = 2
            [-1.0, 0.0, 0.0],  # azimuth +180: u = 0, column 0
            [-1.0, -0.0, 0.0],  # azimuth -180: u = 8, wraps to column 0
            [-1.0, -1e-9, 0.0],  # just short of -180: u just below 8, column 7
            [-1.0, 1e-9, 0.0],  # just past +180 going left: column 0
            direction(-30.0, 5.0, 3.0),  # u = 0.5 * (1 + 1/6) * 8 = 4.67, v = 0.5
            direction(100.0, -25.0, 3.0),  # u = 0.5 * (1 - 5/9) * 8 = 1.78, v = 3.5
        ]
    )
    u, v, distance = spherical_coordinates(points, SMALL)
    rows, cols, inside = pixel_of(u, v, SMALL)
    assert inside.all()
    np.testing.assert_allclose(u[[0, 1, 2, 3]], [4.0, 2.0, 0.0, 8.0], atol=1e-12)
    np.testing.assert_allclose(u[[6, 7]], [14 / 3, 16 / 9], atol=1e-12)
    np.testing.assert_allclose(v[[0, 6, 7]], [1.0, 0.5, 3.5], atol=1e-12)
    np.testing.assert_allclose(distance, [1, 2, 1, 1, 1, 1, 3, 3], atol=1e-12)
    assert cols.tolist() == [4, 2, 0, 0, 7, 0, 4, 1]
    assert rows.tolist() == [1, 1, 1, 1, 1, 1, 0, 3]


def test_points_outside_the_vertical_fov_are_dropped_and_counted():
    points = np.stack(
        [
            direction(0, 15),  # above +10
            direction(0, -35),  # below -30
            direction(0, 9.9),  # row 0
            direction(0, -29.9),  # row 3
            direction(0, 90),  # straight up
        ]
    )
    image = range_image(points, SMALL)
    assert image.outside_fov == 3
    assert (image.range > 0).sum() == 2
    assert image.index[0, 4] == 2 and image.index[3, 4] == 3


def test_nearest_return_wins_and_the_index_image_names_it():
    ray = direction(-30.0, 5.0)  # pixel (0, 4)
    points = np.stack([5.0 * ray, 3.0 * ray, 4.0 * ray, direction(100.0, -25.0, 7.0)])
    image = range_image(points, SMALL)
    assert image.range[0, 4] == pytest.approx(3.0)
    assert image.index[0, 4] == 1
    assert image.range[3, 1] == pytest.approx(7.0) and image.index[3, 1] == 3
    assert (image.index >= 0).sum() == 2 and (image.range > 0).sum() == 2


def test_inverse_by_hand_and_round_trip():
    # Centre of pixel (row 1, column 4): u = 4.5 -> azimuth pi * (1 - 9/8) = -22.5 degrees;
    # v = 1.5 -> elevation (1 - 1.5/4) * 40 - 30 = -5 degrees.
    ranges = np.zeros((4, 8), dtype=np.float32)
    ranges[1, 4] = 2.0
    np.testing.assert_allclose(range_image_points(ranges, SMALL), [direction(-22.5, -5.0, 2.0)])
    rng = np.random.default_rng(0)
    for config in (SMALL, RangeImageConfig(), RangeImageConfig(columns=1024, column_offset=0.5)):
        points = rng.normal(size=(200, 3)) * [10, 10, 1]
        u, v, distance = spherical_coordinates(points, config)
        np.testing.assert_allclose(points_from_coordinates(u, v, distance, config), points)


def test_the_synthetic_lidar_projects_one_ray_per_pixel_and_one_beam_per_row():
    steps = 360
    rays = rig.lidar_directions(steps)  # [32, A, 3], beam 0 the lowest
    config = synthetic_range_image_config(steps)
    points = (rays * 20.0).reshape(-1, 3).astype(np.float32)  # stored as float32 sweeps are
    image = range_image(points, config)
    assert image.outside_fov == 0
    assert sorted(image.index.ravel().tolist()) == list(range(32 * steps))
    beam, column = np.divmod(image.index, steps)
    assert (beam == 31 - np.arange(32)[:, None]).all()  # row r holds beam 31 - r only
    # Firing k at azimuth 360 k / A lies in column A/2 - k (mod A), in its middle.
    assert (column == (steps // 2 - np.arange(steps)[None, :]) % steps).all()


def test_farthest_in_window_wraps_the_seam_and_treats_empty_as_infinite():
    ranges = np.array([[1.0, 2.0, 3.0, 9.0], [5.0, 5.0, 5.0, 0.0]], dtype=np.float32)
    rows_only = farthest_in_window(ranges, 0, 1)
    np.testing.assert_array_equal(rows_only[0], [9.0, 3.0, 9.0, 9.0])  # column 0 sees 3
    assert np.isinf(rows_only[1, [0, 2, 3]]).all() and rows_only[1, 1] == 5.0
    both = farthest_in_window(ranges, 1, 0)
    np.testing.assert_array_equal(both[:, 1], [5.0, 5.0])
    assert np.isinf(both[:, 3]).all()


def wall_range_image(config: RangeImageConfig) -> np.ndarray:
    """A wall 5 m ahead (azimuth -20..20 degrees) in front of a far background at 30 m."""
    u, v = np.meshgrid(np.arange(config.columns) + 0.5, np.arange(config.rows) + 0.5)
    azimuth = np.degrees(np.pi * (1.0 - 2.0 * u / config.columns))
    return np.where(np.abs(azimuth) < 20.0, 5.0, 30.0).astype(np.float32)


def test_hidden_behind_a_wall_is_removed_in_front_and_beside_it_kept():
    config = LidarVisibilityConfig(enabled=True, sensor=RangeImageConfig(), margin=0.1)
    ranges = wall_range_image(config.sensor)
    ranges[27, :] = 0.0  # no returns in the row of -25 degrees: v = (1 - 6.34 / 42.67) * 32
    points = np.stack(
        [
            direction(0.0, -5.0, 10.0),  # behind the wall: hidden
            direction(0.0, -5.0, 4.0),  # in front of the wall: kept
            direction(0.0, -5.0, 5.2),  # on the wall, within the 10 % margin: kept
            direction(35.0, -5.0, 20.0),  # beside the wall, before the background: kept
            direction(0.0, -25.0, 10.0),  # behind the wall, row of no returns: kept
            direction(0.0, 20.0, 10.0),  # outside the field of view: kept
        ]
    )
    hidden = hidden_behind_range_image(points, ranges, config)
    assert hidden.tolist() == [True, False, False, False, False, False]


def test_the_window_keeps_a_point_just_beside_a_silhouette():
    sensor = RangeImageConfig()
    ranges = wall_range_image(sensor)
    u, v, _ = spherical_coordinates(direction(19.8, -5.0)[None], sensor)
    rows, cols, _ = pixel_of(u, v, sensor)
    edge_column = int(cols[0])
    assert ranges[rows[0], edge_column] == 5.0 and ranges[rows[0], edge_column - 1] == 30.0
    behind_the_edge = direction(19.8, -5.0, 10.0)[None]
    alone = LidarVisibilityConfig(enabled=True, sensor=sensor, window_columns=0)
    windowed = LidarVisibilityConfig(enabled=True, sensor=sensor, window_columns=1)
    assert hidden_behind_range_image(behind_the_edge, ranges, alone).tolist() == [True]
    assert hidden_behind_range_image(behind_the_edge, ranges, windowed).tolist() == [False]


def write_sweep(path: Path, points: np.ndarray) -> None:
    cloud = np.zeros((len(points), 5), dtype=np.float32)
    cloud[:, :3] = points
    path.parent.mkdir(parents=True, exist_ok=True)
    cloud.tofile(path)


def test_accumulation_drops_points_of_another_sweep_behind_the_reference_wall(tmp_path):
    sensor = RangeImageConfig(columns=360, column_offset=0.5)
    # Reference sweep: a wall of returns 5 m ahead covering azimuth -20..20, rows all.
    azimuth, elevation = np.meshgrid(np.arange(-20, 21), np.linspace(-30, 10, 32))
    wall = np.stack([direction(a, e, 5.0) for a, e in zip(azimuth.ravel(), elevation.ravel())])
    write_sweep(tmp_path / "reference.bin", wall)
    # The other sweep was taken 2 m behind (ego x -2): a point behind the wall, one in front.
    other = np.array([direction(0, -5, 10.0) + [2, 0, 0], direction(0, -5, 3.0) + [2, 0, 0]])
    write_sweep(tmp_path / "other.bin", other)
    moved_back = np.eye(4)
    moved_back[0, 3] = -2.0
    frames = [
        LidarFrame("other.bin", 0, np.eye(4), moved_back),
        LidarFrame("reference.bin", 50_000, np.eye(4), np.eye(4)),
    ]
    test = LidarVisibilityConfig(enabled=True, sensor=sensor)
    plain = accumulate_frames(frames, tmp_path, NO_EGO, None, 0.2, 0.5)
    tested = accumulate_frames(frames, tmp_path, NO_EGO, None, 0.2, 0.5, test, 50_000)
    assert len(plain.static_points) == len(wall) + 2 and plain.lidar_hidden_points == 0
    assert tested.lidar_hidden_points == 1
    assert len(tested.static_points) == len(wall) + 1
    np.testing.assert_allclose(tested.static_points[0], direction(0, -5, 3.0), atol=1e-5)
    with pytest.raises(ValueError, match="reference_timestamp"):
        accumulate_frames(frames, tmp_path, NO_EGO, None, 0.2, 0.5, test)


def test_object_points_are_tested_where_their_box_is_at_the_reference_time():
    box = Box(box_pose(np.array([10.0, 0.0, 0.0]), 0.0), np.array([4.0, 2.0, 1.5]))
    later = Box(box_pose(np.array([12.0, 1.0, 0.0]), np.pi / 2), np.array([4.0, 2.0, 1.5]))
    points = np.array([[11.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    owner = np.array([0, -1])
    moved = objects_moved_to(points, owner, {"car": box}, {"car": later})
    # (1, 0, 0.5) in the box frame, turned by 90 degrees: (0, 1, 0.5) from (12, 1, 0).
    np.testing.assert_allclose(moved, [[12.0, 2.0, 0.5], [0.0, 0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(objects_moved_to(points, owner, {"car": box}, {}), points)


def test_range_image_panel_draws_range_and_class_of_each_return():
    ranges = np.zeros((2, 64), dtype=np.float32)
    ranges[0, 60], ranges[1, 20] = 10.0, 40.0
    classes = np.full((2, 64), 255, dtype=np.uint8)
    # A barrier right of the legend's swatch; pixel (1, 20) is an unlabelled return.
    classes[0, 60] = 1
    names = ["others", "barrier", "car"]
    picture = range_image_panel(ranges, 40.0, classes=classes, class_names=names, row_scale=3)
    far = depth_to_rgb(np.array([40.0]), 0.0, 40.0)[0]
    near = depth_to_rgb(np.array([10.0]), 0.0, 40.0)[0]
    # Find the range tile: the rows where column 20 shows the far colour (rows 3..5 of it).
    far_rows = np.flatnonzero((picture[:, 20] == far).all(axis=1))
    assert len(far_rows) == 3
    top = far_rows[0] - 3
    assert (picture[top : top + 3, 60] == near).all()
    assert (picture[top : top + 3, 59] == 0).all()  # no return: black
    barrier = label_palette(names)[1]
    assert (picture[:, 60] == barrier).all(axis=1).sum() == 3
    with pytest.raises(ValueError, match="classes"):
        range_image_panel(ranges, 40.0, classes=classes[:1], class_names=names)
