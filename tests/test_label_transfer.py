"""KNN label transfer to unlabelled sweeps: against brute force, the instance rule for moving
objects on a hand-built two-sweep case, and the builders' gain in votes on the tiny dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import REPO, load_tool

from renderlss.data.classes import learning_map_table, load_classes
from renderlss.data.info_builder import create_infos
from renderlss.labels.box_motion import BoxTrack
from renderlss.labels.dense_depth import build_dense_depth, dense_depth_config
from renderlss.labels.depth_accumulation import LidarFrame
from renderlss.labels.label_transfer import (
    UNKNOWN,
    LabelTransferConfig,
    PointClasses,
    accumulate_labelled_frames,
    knn_vote,
    transfer_labels,
)
from renderlss.labels.sweep_voters import TransferredVoterSource
from renderlss.records.files import output_path
from renderlss.records.infos import load_infos
from renderlss.targets.dense_depth_files import DenseDepthTargetSource
from renderlss.targets.lidar import DEFAULT_EGO_BOX, DEFAULT_MIN_DEPTH
from renderlss.targets.semantic_label_files import load_semantic_labels
from renderlss.targets.sources import LidarTargetSource

make_sam_labels = load_tool("make_sam_labels")


def brute_force_vote(queries, query_groups, voters, voter_groups, voter_classes, k, radius, n):
    """Per query: the k nearest same-group voters closer than radius, majority class, ties to
    the class of the nearest tied voter."""
    classes, confidence = [], []
    for point, group in zip(queries, query_groups):
        distance = np.linalg.norm(voters - point, axis=1)
        near = [
            i for i in np.argsort(distance) if voter_groups[i] == group and distance[i] < radius
        ]
        near = near[:k]
        if not near:
            classes.append(UNKNOWN)
            confidence.append(0.0)
            continue
        counts = np.bincount(voter_classes[near], minlength=n)
        winner = next(voter_classes[i] for i in near if counts[voter_classes[i]] == counts.max())
        classes.append(winner)
        confidence.append(counts.max() / len(near))
    return np.array(classes), np.array(confidence)


@pytest.mark.parametrize("k", [1, 3, 4, 9])
def test_knn_vote_matches_brute_force(k):
    rng = np.random.default_rng(k)
    voters = rng.uniform(0, 2, (1200, 3))
    queries = rng.uniform(-0.3, 2.3, (200, 3))
    voter_groups, query_groups = rng.integers(0, 3, 1200), rng.integers(0, 3, 200)
    voter_classes = rng.integers(0, 3, 1200)  # few classes: many ties
    args = (queries, query_groups, voters, voter_groups, voter_classes, k, 0.35, 3)
    classes, confidence = knn_vote(*args)
    truth_classes, truth_confidence = brute_force_vote(*args)
    np.testing.assert_array_equal(classes, truth_classes)
    np.testing.assert_allclose(confidence, truth_confidence, rtol=1e-6)
    # The case covers unknowns beyond the radius and, with an even k, 2-2 ties.
    assert 0 < (classes == UNKNOWN).sum() < 100
    assert k % 2 or (confidence == 0.5).sum() > 5


def write_sweep(root, name, points, lidarseg=None):
    (root / f"{name}.pcd.bin").write_bytes(
        np.column_stack([points, np.zeros((len(points), 2))]).astype(np.float32).tobytes()
    )
    if lidarseg is not None:
        (root / f"{name}.bin").write_bytes(np.asarray(lidarseg, dtype=np.uint8).tobytes())


def test_moving_object_takes_its_own_instance_label_not_the_background(tmp_path):
    car, wall = 4, 15
    # A car drives along +x at 20 m/s past a wall 0.7 m beside its flank.
    track = BoxTrack(
        times=np.array([0, 1_000_000]),
        centres=np.array([[0.0, 0.0, 0.75], [20.0, 0.0, 0.75]]),
        yaws=np.zeros(2),
        sizes=np.array([[4.0, 1.8, 1.5], [4.0, 1.8, 1.5]]),
        velocities=np.array([[20.0, 0, 0], [20.0, 0, 0]]),
    )
    flank = np.array([[x, 0.9, z] for x in np.arange(-1.5, 1.6, 0.25) for z in (0.5, 1.0, 1.3)])
    wall_points = np.array([[x, 1.6, z] for x in np.arange(8, 12.1, 0.25) for z in (0.5, 1.0)])
    # Keyframe (labelled) at t = 0: the car at x = 0, the wall at x = 10.
    write_sweep(
        tmp_path,
        "key",
        np.concatenate([flank, wall_points]),
        [car] * len(flank) + [wall] * len(wall_points),
    )
    # Unlabelled sweep at t = 0.5 s: one car flank point beside the wall, one wall point.
    write_sweep(tmp_path, "sweep", np.array([[10.0, 0.9, 1.0], [10.1, 1.6, 1.0]]))
    frames = [
        LidarFrame(f"{name}.pcd.bin", time, np.eye(4), np.eye(4))
        for name, time in (("key", 0), ("sweep", 500_000))
    ]
    table = np.full(256, 255, dtype=np.uint8)
    table[[car, wall]] = [car, wall]
    point_classes = PointClasses(table, 17, 255)
    far_ego = (-100.0, -100.0, -100.0, -99.0, -99.0, -99.0)
    cloud, static, objects = accumulate_labelled_frames(
        frames, {"key.pcd.bin": "key.bin"}, tmp_path, point_classes, far_ego,
        {"car": track}, 0.2, 0.5,
    )  # fmt: skip
    assert len(cloud.object_points) == len(flank) + 1 and (objects == car).sum() == len(flank)
    labelled = transfer_labels(cloud, static, objects, LabelTransferConfig(k=3, radius=1.0), 17)
    # The sweep's flank point (last object point) votes with the car's own points in its box
    # frame; globally, the wall is nearer to it (0.7 m) than any keyframe car point (10 m).
    assert labelled.object_classes[-1] == car and labelled.object_confidence[-1] == 1.0
    assert labelled.static_classes[-1] == wall and labelled.static_confidence[-1] == 1.0
    # Without box compensation the same point would take the wall's class.
    still, static, objects = accumulate_labelled_frames(
        frames, {"key.pcd.bin": "key.bin"}, tmp_path, point_classes, far_ego, None, 0.2, 0.5
    )
    unmoved = transfer_labels(still, static, objects, LabelTransferConfig(k=3, radius=1.0), 17)
    assert unmoved.static_classes[-2] == wall
    # Placed at t = 0.5 s, the car's points come back at x ~ 10 with their class.
    placed, _ = cloud.place_at({"car": track}, 500_000, 0.5)
    classes, _ = labelled.placed_classes({"car": track}, 500_000, 0.5)
    riding = np.abs(placed[:, 1] - 0.9) < 1e-6
    assert riding.sum() == len(flank) + 1 and np.all(classes[riding] == car)
    assert np.all(classes[np.abs(placed[:, 1] - 1.6) < 1e-6] == wall)


@pytest.fixture(scope="module")
def tiny(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer_infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    _, infos = load_infos(out / "renderlss_infos_train.pkl")
    classes = load_classes(REPO / "configs/_base_/occ3d_nuscenes.py")
    point_classes = PointClasses(
        learning_map_table(classes), len(classes.occ_class_names), classes.ignore_index
    )
    return infos, point_classes, out / "renderlss_infos_train.pkl"


def test_builders_with_transfer_get_more_votes(synthetic_root, tiny, tmp_path):
    infos, point_classes, _ = tiny
    info, cameras = infos[1], ["CAM_FRONT", "CAM_BACK"]
    config = dense_depth_config(window_sweeps=4, visibility_radius=3)
    keyframe = LidarTargetSource(
        synthetic_root,
        point_classes.learning_table,
        point_classes.ignore_index,
        DEFAULT_EGO_BOX,
        DEFAULT_MIN_DEPTH,
    )(info, cameras)
    transferred = TransferredVoterSource(infos, synthetic_root, point_classes, config)(
        info, cameras
    )
    for cam in cameras:
        keyframe_votes = (keyframe[cam].semantics != point_classes.ignore_index).sum()
        assert len(transferred[cam]) > 2 * keyframe_votes
        with np.load(
            output_path(synthetic_root / "oracle", cam, info["cams"][cam]["data_path"])
        ) as d:
            truth = d["semantics"]
        uv = np.floor(transferred[cam].uv).astype(int)
        assert np.mean(truth[uv[:, 1], uv[:, 0]] == transferred[cam].semantics) > 0.85
    # The dense depth builder writes the classes, and its target source reads them back.
    with_classes = dense_depth_config(window_sweeps=4, visibility_radius=3, transfer_labels=True)
    summary = build_dense_depth(
        [info], synthetic_root, tmp_path, with_classes, cameras, show_progress=False,
        point_classes=point_classes,
    )  # fmt: skip
    assert summary.done == 2 and not summary.failed
    targets = DenseDepthTargetSource(tmp_path, point_classes.ignore_index)(info, cameras)
    for cam in cameras:
        classed = targets[cam].semantics != point_classes.ignore_index
        assert classed.sum() > 1.5 * (keyframe[cam].semantics != point_classes.ignore_index).sum()
    with pytest.raises(ValueError, match="class taxonomy"):
        build_dense_depth([info], synthetic_root, tmp_path / "x", with_classes, cameras)


def test_label_tool_with_transferred_votes_labels_more_pixels(tiny, tmp_path):
    infos, point_classes, infos_path = tiny
    labelled = {}
    for votes in ("keyframe", "transferred"):
        out = tmp_path / votes
        argv = ["--infos", str(infos_path), "--out", str(out), "--masks", "slic"]
        argv += ["--votes", votes, "--window-sweeps", "4", "--cameras", "CAM_FRONT"]
        assert make_sam_labels.main([*argv, "--shard", "1/6", "--no-progress"]) == 0
        path = output_path(out, "CAM_FRONT", infos[1]["cams"]["CAM_FRONT"]["data_path"])
        labels = load_semantic_labels(path).labels
        labelled[votes] = (labels != point_classes.ignore_index).sum()
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["config"]["votes"]["source"].startswith(votes)
    assert labelled["transferred"] > labelled["keyframe"]
