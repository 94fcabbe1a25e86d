"""Dense multi-frame depth: hand cases for box motion, visibility and completion, and the
whole builder against the synthetic world's exact oracle."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from renderlss.data.classes import load_classes
from renderlss.data.info_builder import create_infos
from renderlss.geometry import pose_matrix, yaw_to_quaternion
from renderlss.geometry.occlusion import hidden_points, nearest_in_quadrants
from renderlss.labels.artifacts import parse_shard, shard_indices
from renderlss.labels.box_motion import BoxTrack, box_at, interpolate_angle, to_box_frame
from renderlss.labels.dense_depth import (
    accumulate_keyframe,
    build_dense_depth,
    dense_depth_config,
    group_by_scene,
    manifest,
    scene_context,
)
from renderlss.labels.depth_accumulation import LidarFrame, accumulate_frames
from renderlss.labels.depth_completion import complete_depth
from renderlss.labels.depth_quality import evaluate_against_oracle
from renderlss.labels.visibility import LidarVisibilityConfig
from renderlss.records.files import output_path
from renderlss.records.infos import load_infos
from renderlss.synthetic.lidar_range_image import dataroot_range_image_config
from renderlss.targets.dense_depth_files import (
    DenseDepthTargetSource,
    dense_depth_targets,
    load_dense_depth,
    save_dense_depth,
)

REPO = Path(__file__).resolve().parents[1]
SECOND = 1_000_000  # microseconds
NO_EGO = (-0.1, -0.1, -0.1, 0.1, 0.1, 0.1)


def moving_track() -> BoxTrack:
    """A 4 x 2 x 1.5 m box driving +x at 10 m/s while turning from 170 to -170 degrees."""
    return BoxTrack(
        times=np.array([0, SECOND], dtype=np.int64),
        centres=np.array([[0.0, 0.0, 0.75], [10.0, 0.0, 0.75]]),
        yaws=np.radians([170.0, -170.0]),
        sizes=np.array([[4.0, 2.0, 1.5], [4.0, 2.0, 1.5]]),
        velocities=np.array([[10.0, 0.0, 0.0], [10.0, 0.0, 0.0]]),
    )


def test_box_interpolation_linear_centre_shortest_yaw_and_extrapolation():
    track = moving_track()
    mid = box_at(track, SECOND // 4, max_extrapolation_s=0.5)
    np.testing.assert_allclose(mid.pose[:3, 3], [2.5, 0.0, 0.75])
    # 170 -> -170 turns by +20 degrees through 180, not by -340.
    yaw = np.arctan2(mid.pose[1, 0], mid.pose[0, 0])
    assert np.degrees(yaw) == pytest.approx(175.0)
    assert interpolate_angle(np.radians(-170), np.radians(170), 0.5) == pytest.approx(-np.pi)
    # 0.2 s after the last annotation: moved on by its velocity; 0.6 s: gone.
    late = box_at(track, SECOND + SECOND // 5, max_extrapolation_s=0.5)
    np.testing.assert_allclose(late.pose[:3, 3], [12.0, 0.0, 0.75])
    assert box_at(track, SECOND + 6 * SECOND // 10, max_extrapolation_s=0.5) is None
    assert box_at(track, -SECOND // 10, max_extrapolation_s=0.0) is None


def write_points(path: Path, points: np.ndarray) -> None:
    full = np.zeros((len(points), 5), dtype=np.float32)
    full[:, :3] = points
    full.tofile(path)


def test_moving_box_points_land_on_its_surface_at_camera_time(tmp_path):
    track = moving_track()
    sweep_box = box_at(track, 0, 0.5)
    # Points on the box's front face (box x = +2) at sweep time, plus one static point.
    face = np.array([[2.0, y, z] for y in (-0.8, 0.0, 0.8) for z in (-0.5, 0.5)])
    on_box = face @ sweep_box.pose[:3, :3].T + sweep_box.pose[:3, 3]
    static = np.array([[0.0, 20.0, 0.0]])
    write_points(tmp_path / "s.pcd.bin", np.concatenate([on_box, static]))
    frame = LidarFrame("s.pcd.bin", 0, np.eye(4), np.eye(4))
    cloud = accumulate_frames([frame], tmp_path, NO_EGO, {"car": track}, 0.2, 0.5)
    assert len(cloud.static_points) == 1 and len(cloud.object_points) == len(face)

    camera_time = 3 * SECOND // 4
    placed, dropped = cloud.place_at({"car": track}, camera_time, 0.5)
    assert dropped == 0
    target_box = box_at(track, camera_time, 0.5)
    np.testing.assert_allclose(to_box_frame(placed[1:], target_box), face, atol=1e-5)
    # The face moved with the box: 7.5 m along x and turned by 15 degrees.
    yaw = np.radians(170 + 15)
    expected = face @ np.array(
        [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    ).T + [7.5, 0, 0.75]
    np.testing.assert_allclose(placed[1:], expected, atol=1e-5)
    np.testing.assert_allclose(placed[0], static[0])
    # Seen from long after the instance's last box, its points are dropped and counted.
    _, dropped = cloud.place_at({"car": track}, 3 * SECOND, 0.5)
    assert dropped == len(face)


def test_ground_inside_a_moving_box_margin_stays_in_place(tmp_path):
    track = moving_track()  # its bottom face lies on the ground, z = 0
    sweep_box = box_at(track, 0, 0.5)
    # Ground returns 0.1 m in front of and beside the box (inside the 0.2 m margin), and one
    # on its front face 0.5 m up.
    ground_box = np.array([[2.1, 0.0, -0.75], [0.0, 1.1, -0.75], [-2.1, -0.5, -0.75]])
    ground = ground_box @ sweep_box.pose[:3, :3].T + sweep_box.pose[:3, 3]
    ground[:, 2] = 0.0
    face = np.array([[2.0, 0.0, -0.25]]) @ sweep_box.pose[:3, :3].T + sweep_box.pose[:3, 3]
    write_points(tmp_path / "s.pcd.bin", np.concatenate([ground, face]))
    frame = LidarFrame("s.pcd.bin", 0, np.eye(4), np.eye(4))
    cloud = accumulate_frames([frame], tmp_path, NO_EGO, {"car": track}, 0.2, 0.5)
    assert len(cloud.static_points) == len(ground) and len(cloud.object_points) == 1
    placed, _ = cloud.place_at({"car": track}, 3 * SECOND // 4, 0.5)
    np.testing.assert_allclose(placed[: len(ground)], ground, atol=1e-5)  # not dragged 7.5 m


def test_ego_body_returns_are_removed(tmp_path):
    write_points(tmp_path / "s.pcd.bin", np.array([[0.5, 0.0, 1.0], [10.0, 0.0, 1.0]]))
    frame = LidarFrame("s.pcd.bin", 0, np.eye(4), pose_matrix(yaw_to_quaternion(0.3), [5, 5, 0]))
    cloud = accumulate_frames([frame], tmp_path, (-1, -1, 0, 2, 1, 2), None, 0.2, 0.5)
    assert cloud.ego_points == 1 and len(cloud.static_points) == 1


def test_quadrant_minimum_matches_brute_force():
    rng = np.random.default_rng(1)
    depth = np.where(rng.random((9, 11)) < 0.3, rng.uniform(1, 50, (9, 11)), 0).astype(np.float32)
    radius = 2
    got = nearest_in_quadrants(depth, radius)
    signs = [(-1, -1), (-1, 1), (1, -1), (1, 1)]  # (row, column) direction of each quadrant
    for q, (sr, sc) in enumerate(signs):
        for i in range(9):
            for j in range(11):
                values = [
                    depth[i + sr * di, j + sc * dj]
                    for di in range(radius + 1)
                    for dj in range(radius + 1)
                    if 0 <= i + sr * di < 9
                    and 0 <= j + sc * dj < 11
                    and depth[i + sr * di, j + sc * dj] > 0
                ]
                assert got[q, i, j] == (min(values) if values else np.inf)


def test_visibility_removes_background_seen_through_a_gap():
    depth = np.zeros((9, 9), dtype=np.float32)
    depth[2:7:2, 2:7:2] = 5.0  # a sparse grid of foreground points (a near car)
    depth[4, 3] = 20.0  # the wall behind it, seen between them
    depth[4, 8] = 20.0  # the wall beside the car: nearer points only on its left
    ground = np.zeros((9, 9), dtype=np.float32)
    ground[::2, 4] = 40.0 / (1 + np.arange(5))  # ground: nearer below only
    hidden = hidden_points(depth, radius=2, margin=0.1, min_sectors=4)
    assert hidden[4, 3] and not hidden[4, 8] and hidden.sum() == 1
    assert not hidden_points(ground, radius=2, margin=0.1, min_sectors=4).any()


def test_completion_fills_a_hole_and_marks_it():
    depth = np.zeros((12, 12), dtype=np.float32)
    depth[3:9, 3:9] = 10.0
    depth[5, 5] = depth[5, 6] = 0.0  # a hole inside the surface
    filled, confidence = complete_depth(depth, (5,), filled_confidence=0.5)
    assert filled[5, 5] == pytest.approx(10.0) and confidence[5, 5] == 0.5
    assert confidence[3, 3] == 1.0 and filled[3, 3] == 10.0
    # Outside the measured region nothing is invented (no spreading into sky).
    assert filled[0, 0] == 0 and confidence[0, 0] == 0 and filled[1, 5] == 0


def test_file_round_trip_targets_and_errors(tmp_path):
    depth = np.zeros((3, 4), dtype=np.float32)
    depth[1, 2] = 12.5
    depth[2, 0] = 7.0
    confidence = np.where(depth > 0, 1.0, 0.0).astype(np.float32)
    confidence[2, 0] = 0.5
    path = tmp_path / "CAM_FRONT" / "img.npz"
    save_dense_depth(path, depth, confidence)
    got_depth, got_conf = load_dense_depth(path)
    np.testing.assert_allclose(got_depth, depth)
    np.testing.assert_allclose(got_conf, confidence, atol=1 / 255)
    # A file stored at half resolution maps to pixel centres of the 8 x 6 image.
    targets = dense_depth_targets(path, width=8, height=6, ignore_index=255)
    np.testing.assert_allclose(targets.uv, [[5.0, 3.0], [1.0, 5.0]])
    np.testing.assert_allclose(targets.depth, [12.5, 7.0])
    assert set(targets.semantics) == {255}
    info = dict(cams=dict(CAM_FRONT=dict(data_path="samples/CAM_FRONT/img.jpg", width=8, height=6)))
    assert len(DenseDepthTargetSource(tmp_path, 255)(info, ["CAM_FRONT"])["CAM_FRONT"]) == 2
    with pytest.raises(ValueError, match="not an integer downscale"):
        dense_depth_targets(path, width=9, height=6, ignore_index=255)
    np.savez(tmp_path / "bad.npz", depth=depth)
    with pytest.raises(ValueError, match=r"bad\.npz.*'confidence' missing"):
        load_dense_depth(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="none.npz"):
        load_dense_depth(tmp_path / "none.npz")


def test_shards_split_keyframes_without_overlap():
    parts = [shard_indices(10, (i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == list(range(10))
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(ValueError, match="0 <= i < n"):
        parse_shard("3/3")


@pytest.fixture(scope="module")
def synthetic_infos(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense_infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    _, infos = load_infos(out / "renderlss_infos_train.pkl")
    return infos


def test_accumulated_depth_agrees_with_oracle(synthetic_root, synthetic_infos):
    classes = load_classes(REPO / "configs/_base_/occ3d_nuscenes.py")
    dynamic = [classes.occ_class_names.index(c) for c in classes.dynamic_class_names]
    cameras = list(synthetic_infos[0]["cams"])
    # The fixture's images are 160 px wide: the visibility window scaled down from 400 px.
    base = dense_depth_config(visibility_radius=3)
    r = evaluate_against_oracle(
        synthetic_infos[:3], synthetic_root, base, cameras, dynamic, show_progress=False
    )
    single, static, moving, visible, complete = r.values()
    # Far denser than one sweep, and more accurate.
    assert visible["coverage"] > 3 * single["coverage"]
    assert visible["abs_rel"] < 0.03 and visible["abs_rel"] < single["abs_rel"]
    # Ghosts of moving objects: visible on dynamic pixels without box motion, gone with it.
    assert static["dynamic_outlier_rate"] > 2 * moving["dynamic_outlier_rate"]
    assert visible["dynamic_abs_rel"] < 0.05
    # ... and their points are moved, not deleted: the dynamic pixels stay about as covered
    # as when every point is kept static (errors of no pixel at all would be NaN).
    assert moving["dynamic_coverage"] > 0.9 * static["dynamic_coverage"]
    assert visible["dynamic_coverage"] > 0.75 * static["dynamic_coverage"]
    assert visible["dynamic_coverage"] > 3 * single["dynamic_coverage"]
    # Completion adds pixels at a small cost in accuracy.
    assert complete["coverage"] > 1.2 * visible["coverage"] and complete["abs_rel"] < 0.05
    # Depth where the oracle sees sky only at silhouettes against the sky (sub-pixel edges).
    front = synthetic_infos[0]["cams"]["CAM_FRONT"]
    image_pixels = front["width"] * front["height"]
    assert max(m["pixels_per_image_on_sky"] for m in r.values()) < 0.005 * image_pixels


def test_builder_resumes_shards_and_reports_missing_sweeps(
    synthetic_root, synthetic_infos, tmp_path
):
    infos = synthetic_infos[:2]
    cameras = ["CAM_FRONT", "CAM_BACK"]
    config = dense_depth_config(window_sweeps=3, visibility_radius=3)
    first = build_dense_depth(infos, synthetic_root, tmp_path, config, cameras, (0, 2), False)
    assert (first.done, first.skipped, first.failed) == (2, 0, [])
    written = output_path(tmp_path, "CAM_FRONT", infos[0]["cams"]["CAM_FRONT"]["data_path"])
    stamp = os.stat(written).st_mtime_ns
    second = build_dense_depth(infos, synthetic_root, tmp_path, config, cameras, (0, 1), False)
    assert (second.done, second.skipped) == (2, 2)
    assert os.stat(written).st_mtime_ns == stamp
    assert (tmp_path / "manifest.json").is_file()
    with pytest.raises(ValueError, match="window_sweeps"):
        build_dense_depth(
            infos,
            synthetic_root,
            tmp_path,
            dense_depth_config(window_sweeps=1),
            cameras,
            (0, 1),
            False,
        )

    broken = copy.deepcopy(synthetic_infos[1:2])  # the first keyframe has no earlier sweeps
    broken[0]["sweeps"][0]["data_path"] = "sweeps/LIDAR_TOP/gone.pcd.bin"
    report = build_dense_depth(
        broken, synthetic_root, tmp_path / "b", config, cameras, (0, 1), False
    )
    assert report.done == 0 and len(report.failed) == 1
    assert "gone.pcd.bin" in report.failed[0] and broken[0]["token"] in report.failed[0]
    assert "1 keyframes failed" in report.format()


def test_the_lidar_side_test_reaches_the_builder_and_its_manifest(synthetic_root, synthetic_infos):
    test = LidarVisibilityConfig(enabled=True, sensor=dataroot_range_image_config(synthetic_root))
    on = dense_depth_config(window_sweeps=3, lidar_visibility=test)
    off = dense_depth_config(window_sweeps=3)
    info = synthetic_infos[1]
    scene = info.get("scene_token") or info.get("scene_name", "")
    context = scene_context(group_by_scene(synthetic_infos)[scene])
    tested = accumulate_keyframe(info, context, synthetic_root, on)
    plain = accumulate_keyframe(info, context, synthetic_root, off)
    assert plain.lidar_hidden_points == 0 and tested.lidar_hidden_points > 0
    points = len(tested.static_points) + len(tested.object_points)
    assert (
        points == len(plain.static_points) + len(plain.object_points) - tested.lidar_hidden_points
    )
    # Recorded only when on, so folders built without it still resume.
    assert manifest(on, ["CAM_FRONT"])["config"]["lidar_visibility"]["enabled"] is True
    assert "lidar_visibility" not in manifest(off, ["CAM_FRONT"])["config"]
    with pytest.raises(ValueError, match="lidar_visibility and transfer_labels"):
        dense_depth_config(lidar_visibility=test, transfer_labels=True)


def test_cli_help():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/make_dense_depth.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in (
        "--window-sweeps",
        "--no-dynamic",
        "--no-visibility",
        "--lidar-visibility",
        "--complete",
        "--shard",
        "--evaluate-oracle",
    ):
        assert option in result.stdout


def test_dynamic_handling_needs_boxes(synthetic_root, synthetic_infos, tmp_path):
    boxless = copy.deepcopy(synthetic_infos[:1])
    boxless[0]["gt_boxes"] = np.zeros((0, 7), dtype=np.float32)
    with pytest.raises(ValueError, match="--no-dynamic"):
        build_dense_depth(boxless, synthetic_root, tmp_path, dense_depth_config(), ["CAM_FRONT"])
