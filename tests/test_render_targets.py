"""Ray targets of a sample, checked against the hand-chosen LiDAR points of the fixture."""

from __future__ import annotations

import numpy as np
import pytest
from nuscenes_fixture import (
    INTRINSIC,
    LIDAR_POINTS,
    LIDAR_TRANSLATION,
    LIDARSEG_LABELS,
    make_nuscenes_dataroot,
)

from renderlss.data.classes import learning_map_table, load_classes
from renderlss.data.config import DataConfig, TargetConfig
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import create_infos
from renderlss.data.render_targets import dynamic_class_mask, input_depth_image, neighbour_infos
from renderlss.geometry import pose_matrix, transform_points, yaw_to_quaternion
from renderlss.geometry.grid import VoxelGrid
from renderlss.targets.pixel_targets import PixelTargets

CLASSES = load_classes("configs/_base_/occ3d_nuscenes.py")
GRID = VoxelGrid((-20.0, -20.0, -3.0, 20.0, 20.0, 3.0), (0.5, 0.5, 0.5))
NO_EGO_BOX = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def infos_path(tmp_path_factory):
    root = make_nuscenes_dataroot(tmp_path_factory.mktemp("nuscenes") / "root")
    create_infos(str(root), "v1.0-fixture", str(root / "infos"), show_progress=False)
    return root / "infos" / "renderlss_infos_train.pkl"


def make_dataset(infos_path, train=False, grid=GRID, **targets) -> OccDataset:
    targets = dict(dict(sources=["lidar"], num_rays=16, ego_box=NO_EGO_BOX), **targets)
    target_cfg = TargetConfig(**targets)
    config = DataConfig(
        input_size=(12, 20), grid=grid, classes=CLASSES, load_occ=False, targets=target_cfg
    )
    return OccDataset(infos_path, config, train=train)


def test_rays_end_on_the_lidar_points(infos_path):
    sample = make_dataset(infos_path)[0]
    rays = {k: v.numpy() for k, v in sample["targets"].items()}
    assert rays["depth"].shape == (16,) and rays["origins"].shape == (16, 3)
    np.testing.assert_allclose(np.linalg.norm(rays["dirs"], axis=1), 1.0, atol=1e-6)
    ends = rays["origins"] + rays["dirs"] * (rays["depth"] / rays["z_per_t"])[:, None]
    # The fixture's points in the key ego frame (LIDAR_TOP yaw -90 deg at LIDAR_TRANSLATION).
    lidar2ego = pose_matrix(yaw_to_quaternion(np.deg2rad(-90.0)), LIDAR_TRANSLATION)
    expected = transform_points(lidar2ego, LIDAR_POINTS[:, :3].astype(np.float64))
    expected_cls = learning_map_table(CLASSES)[LIDARSEG_LABELS]
    # Targets sit at pixel centres: the end point is off by at most ~1 pixel at its depth.
    tolerance = rays["depth"] / INTRINSIC[0][0] * 1.5
    for end, cls, tol in zip(ends, rays["semantics"], tolerance):
        dist = np.linalg.norm(expected - end, axis=1)
        nearest = int(np.argmin(dist))
        assert dist[nearest] < tol
        assert cls == expected_cls[nearest]
    assert not rays["adjacent"].any()


def test_adjacent_keyframes_add_rays(infos_path):
    dataset = make_dataset(infos_path, adjacent_keyframes=1, num_rays=200)
    sample = dataset[1]  # the middle keyframe of the first scene has both neighbours
    assert sample["targets"]["adjacent"].any()
    info = dataset.infos[1]
    assert len(neighbour_infos(info, dataset._lookup, 1)) == 2
    assert len(neighbour_infos(dataset.infos[0], dataset._lookup, 3)) == 2  # scene end


def test_bev_augmentation_applies_to_rays(infos_path):
    sample = make_dataset(infos_path, train=True)[0]
    bev = sample["bev_aug"].numpy().astype(np.float64)
    assert not np.allclose(bev, np.eye(4))  # this seed draws a real rotation/flip
    rays = {k: v.numpy() for k, v in sample["targets"].items()}
    ends = rays["origins"] + rays["dirs"] * (rays["depth"] / rays["z_per_t"])[:, None]
    lidar2ego = pose_matrix(yaw_to_quaternion(np.deg2rad(-90.0)), LIDAR_TRANSLATION)
    expected = transform_points(bev @ lidar2ego, LIDAR_POINTS[:, :3].astype(np.float64))
    tolerance = rays["depth"] / INTRINSIC[0][0] * 1.5
    for end, tol in zip(ends, tolerance):
        assert np.min(np.linalg.norm(expected - end, axis=1)) < tol


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="unknown.*'sam'"):
        TargetConfig(sources=["sam"]).validate("data.targets")


def test_input_depth_image_by_hand():
    targets = PixelTargets(
        uv=np.array([[4.5, 3.5], [4.9, 3.1], [30.0, 1.0], [1.5, 1.5]]),
        depth=np.array([2.0, 1.0, 5.0, 0.0], dtype=np.float32),
        semantics=np.zeros(4, dtype=np.uint8),
        confidence=np.ones(4, dtype=np.float32),
    )
    half = np.diag([0.5, 0.5, 1.0])
    image = input_depth_image(targets, half, (4, 6))
    expected = np.zeros((4, 6), dtype=np.float32)
    expected[1, 2] = 1.0  # the nearer of the two points in pixel (row 1, col 2); the third
    np.testing.assert_array_equal(image, expected)  # falls outside, the fourth has no depth


def test_source_options_are_checked():
    with pytest.raises(ValueError, match="dense_depth_dir: needed"):
        TargetConfig(sources=["dense_depth"]).validate("data.targets")
    with pytest.raises(ValueError, match="source_weights.*'sam_labels'"):
        TargetConfig(sources=["lidar"], source_weights={"sam_labels": 0.5}).validate("t")


def test_source_weight_scales_confidence(infos_path):
    plain = make_dataset(infos_path)
    weighted = make_dataset(infos_path, source_weights={"lidar": 0.25})
    a, b = plain[0]["targets"], weighted[0]["targets"]
    np.testing.assert_array_equal(a["depth"].numpy(), b["depth"].numpy())
    np.testing.assert_allclose(b["confidence"].numpy(), 0.25 * a["confidence"].numpy())


def ray_ends(rays: dict) -> np.ndarray:
    """[R, 3] surface points of target rays (tensors) in the key ego frame."""
    rays = {k: v.numpy() for k, v in rays.items()}
    return rays["origins"] + rays["dirs"] * (rays["depth"] / rays["z_per_t"])[:, None]


def test_query_rays_also_cross_the_grid_to_surfaces_beyond_it(infos_path):
    # A grid of +-5 m: some of the fixture's LiDAR points lie beyond it.
    small = VoxelGrid((-5.0, -5.0, -3.0, 5.0, 5.0, 3.0), (0.5, 0.5, 0.5))
    assert "query_targets" not in make_dataset(infos_path, grid=small)[0]
    sample = make_dataset(infos_path, grid=small, num_rays=64, query_rays=64)[0]
    rendered, queries = ray_ends(sample["targets"]), ray_ends(sample["query_targets"])
    assert queries.shape == (64, 3) and (sample["query_targets"]["depth"] > 0).all()
    _, rendered_inside = small.point_to_index(rendered)
    _, query_inside = small.point_to_index(queries)
    assert rendered_inside.all()  # the renderer only gets surfaces it can reach
    assert not query_inside.all()  # the query rays keep the far ones: free space inside
    surfaces = {tuple(p) for p in np.round(rendered, 3)}
    assert surfaces < {tuple(p) for p in np.round(queries, 3)}


def test_query_rays_skip_moved_objects_of_adjacent_keyframes(infos_path):
    dataset = make_dataset(infos_path, adjacent_keyframes=1, query_rays=400)
    rays = dataset[1]["query_targets"]
    adjacent, semantics = rays["adjacent"].numpy(), rays["semantics"].numpy().astype(int)
    dynamic = np.append(dynamic_class_mask(CLASSES), False)  # ignore_index: not dynamic
    semantics = np.minimum(semantics, len(dynamic) - 1)
    assert adjacent.any() and dynamic[semantics[~adjacent]].any()
    assert not dynamic[semantics[adjacent]].any()
