"""Unlabeled frames as data: the camera frames between keyframes of a synthetic dataroot read
back through nuscenes-devkit, their info records, and keyframes marked unlabeled that must
never bring a label into a batch while keeping their LiDAR depth."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_tool
from nuscenes.nuscenes import NuScenes
from nuscenes_fixture import (
    INTRINSIC,
    LIDAR_POINTS,
    LIDAR_TRANSLATION,
    make_nuscenes_dataroot,
    occ_labels,
)
from pyquaternion import Quaternion

from renderlss.configuration import from_dict
from renderlss.data.classes import load_classes
from renderlss.data.config import DataConfig, TargetConfig
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import create_infos
from renderlss.data.training_set import make_training_loader, training_records
from renderlss.data.unlabeled import is_labeled, unlabeled_scene_names
from renderlss.data.unlabeled_infos import camera_groups
from renderlss.engine.cli import split_infos
from renderlss.geometry.grid import VoxelGrid
from renderlss.models.losses import occupancy_ce_loss, semantic_ce_loss
from renderlss.records.infos import load_infos
from renderlss.synthetic import generate_dataset, synthetic_config
from renderlss.train.distributed import DistInfo

CLASSES = load_classes(Path(__file__).resolve().parents[1] / "configs/_base_/occ3d_nuscenes.py")
IGNORE = CLASSES.ignore_index
SYNTHETIC_VERSION = "v1.0-synthetic"
ONE_PROCESS = DistInfo(0, 1, 0, torch.device("cpu"), False)


def pose(record: dict) -> np.ndarray:
    """[4, 4] pose of a devkit record, through pyquaternion (independent of renderlss)."""
    matrix = Quaternion(record["rotation"]).transformation_matrix
    matrix[:3, 3] = record["translation"]
    return matrix


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """One scene, two keyframes, every 12 Hz camera frame, and its keyframe and unlabeled
    info files."""
    root = tmp_path_factory.mktemp("synthetic") / "root"
    config = synthetic_config(
        num_scenes=1,
        keyframes_per_scene=2,
        width=32,
        height=18,
        azimuth_steps=32,
        camera_mask_stride=4,
        occ_subsamples=1,
        camera_sweeps=True,
        grid=dict(point_cloud_range=[-12.8, -12.8, -1.0, 12.8, 12.8, 5.4], voxel_size=[1.6] * 3),
    )
    generate_dataset(root, config, progress=False)
    args = ["--dataroot", str(root), "--version", SYNTHETIC_VERSION, "--out-dir", str(root)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert load_tool("create_data").main([*args, "--val-fraction", "0", "--unlabeled"]) == 0
    return root


@pytest.fixture(scope="module")
def devkit(synthetic_root):
    with contextlib.redirect_stdout(io.StringIO()):
        return NuScenes(SYNTHETIC_VERSION, str(synthetic_root), verbose=False)


def test_devkit_reads_the_camera_sweeps(synthetic_root, devkit):
    cameras = [s["channel"] for s in devkit.sensor if s["modality"] == "camera"]
    for channel in cameras:
        chain = sorted(
            (r for r in devkit.sample_data if r["channel"] == channel), key=lambda r: r["timestamp"]
        )
        # 2 keyframes 0.5 s apart at 12 Hz: the keyframe images and 5 frames in between.
        assert [r["is_key_frame"] for r in chain] == [True] + [False] * 5 + [True]
        assert len({r["timestamp"] for r in chain}) == len(chain)
        for before, after in zip(chain, chain[1:]):
            assert before["next"] == after["token"] and after["prev"] == before["token"]
        for record in chain:
            assert devkit.get("calibrated_sensor", record["calibrated_sensor_token"])
            assert (
                devkit.get("ego_pose", record["ego_pose_token"])["timestamp"] == record["timestamp"]
            )
            assert Path(devkit.get_sample_data_path(record["token"])).is_file()
            assert record["filename"].startswith(
                "sweeps/" if not record["is_key_frame"] else "samples/"
            )


def test_unlabeled_records_match_the_tables(synthetic_root, devkit):
    metadata, infos = load_infos(synthetic_root / "renderlss_infos_train_unlabeled.pkl")
    assert metadata["has_occ"] is False and metadata["has_lidarseg"] is False
    # Every non-keyframe camera image is in exactly one record.
    non_key = {r["token"] for r in devkit.sample_data if r["channel"].startswith("CAM")}
    non_key -= {r["token"] for r in devkit.sample_data if r["is_key_frame"]}
    used = [cam["sample_data_token"] for info in infos for cam in info["cams"].values()]
    assert sorted(used) == sorted(non_key) and len(infos) == 5
    lidar = [r for r in devkit.sample_data if r["channel"] == "LIDAR_TOP"]
    for i, info in enumerate(infos):
        assert info["labeled"] is False
        assert info["occ_path"] == "" and info["lidarseg_path"] == "" and not len(info["gt_boxes"])
        assert info["prev"] == (infos[i - 1]["token"] if i else "")
        assert info["next"] == (infos[i + 1]["token"] if i + 1 < len(infos) else "")
        times = []
        for channel, cam in info["cams"].items():
            record = devkit.get("sample_data", cam["sample_data_token"])
            assert record["channel"] == channel and not record["is_key_frame"]
            assert cam["timestamp"] == record["timestamp"]
            ego = devkit.get("ego_pose", record["ego_pose_token"])
            np.testing.assert_allclose(cam["ego2global_translation"], ego["translation"])
            np.testing.assert_allclose(cam["ego2global_rotation"], ego["rotation"])
            times.append(record["timestamp"])
        # The LiDAR record nearest to the mean camera time, by brute force over all of them.
        nearest = min(lidar, key=lambda r: abs(r["timestamp"] - np.mean(times)))
        assert info["lidar_token"] == nearest["token"]
        assert info["lidar_path"] == nearest["filename"]
        assert info["timestamp"] == nearest["timestamp"]
        ego = devkit.get("ego_pose", nearest["ego_pose_token"])
        np.testing.assert_allclose(info["ego2global_translation"], ego["translation"])


def test_dataset_reads_an_unlabeled_record(synthetic_root, devkit):
    grid = VoxelGrid((-12.8, -12.8, -1.0, 12.8, 12.8, 5.4), (1.6, 1.6, 1.6))
    config = DataConfig(
        input_size=(16, 24),
        grid=grid,
        classes=CLASSES,
        workers=0,
        targets=TargetConfig(sources=["lidar"], num_rays=64),
    )
    dataset = OccDataset(synthetic_root / "renderlss_infos_train_unlabeled.pkl", config, False)
    sample = dataset[2]
    info = load_infos(synthetic_root / "renderlss_infos_train_unlabeled.pkl")[1][2]
    assert sample["meta"]["labeled"] is False
    assert sample["img"].shape == (6, 3, 16, 24)
    assert (sample["voxel_semantics"] == IGNORE).all() and not sample["mask_camera"].any()
    assert (sample["targets"]["semantics"] == IGNORE).all()
    assert (sample["targets"]["depth"] > 0).all()
    key = pose(
        devkit.get("ego_pose", devkit.get("sample_data", info["lidar_token"])["ego_pose_token"])
    )
    for n, channel in enumerate(config.cameras):
        record = devkit.get("sample_data", info["cams"][channel]["sample_data_token"])
        cam2key = (
            np.linalg.inv(key)
            @ pose(devkit.get("ego_pose", record["ego_pose_token"]))
            @ pose(devkit.get("calibrated_sensor", record["calibrated_sensor_token"]))
        )
        np.testing.assert_allclose(sample["cam2ego"][n].numpy(), cam2key, atol=1e-5)


def _chain(channel: str, times: list[int], keys: set[int]) -> list[dict]:
    return [
        dict(token=f"{channel}-{t}", timestamp=t, is_key_frame=t in keys) for t in sorted(times)
    ]


def test_camera_groups_by_hand():
    keys = {0, 500}
    chains = {
        "A": _chain("A", [0, 100, 200, 300, 500], keys),
        # B fires 20 ms after A, but drops its frame at 220: A's frame at 200 has no partner.
        "B": _chain("B", [20, 120, 320, 520], keys),
    }
    groups, skipped = camera_groups(chains, ["A", "B"], max_offset_us=50)
    assert [(g["A"]["timestamp"], g["B"]["timestamp"]) for g in groups] == [(100, 120), (300, 320)]
    assert len(skipped) == 1 and "A-200" in skipped[0]
    # A partner that is a keyframe image leaves the group out.
    chains["B"] = _chain("B", [0, 120, 320, 500], {0, 120, 500})
    groups, skipped = camera_groups(chains, ["A", "B"], max_offset_us=50)
    assert [g["A"]["timestamp"] for g in groups] == [300] and "keyframe" in skipped[0]


# --- keyframes marked unlabeled ------------------------------------------------------------

# 20 x 20 x 6, the shape of the fixture's labels, around all of its LiDAR points.
GRID = VoxelGrid((-20.0, -20.0, -3.0, 20.0, 20.0, 9.0), (2.0, 2.0, 2.0))
NO_EGO_BOX = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
# The fixture's points in its key ego frame (LIDAR_TOP yaw -90 deg at LIDAR_TRANSLATION).
LIDAR_POINTS_EGO = LIDAR_POINTS[:, :3].astype(np.float64) @ Quaternion(
    axis=[0, 0, 1], degrees=-90
).rotation_matrix.T + np.asarray(LIDAR_TRANSLATION)


@pytest.fixture(scope="module")
def fixture_infos(tmp_path_factory):
    """Both scenes of the fixture with Occ3D labels and lidarseg at every keyframe."""
    root = tmp_path_factory.mktemp("nuscenes") / "root"
    every_keyframe = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1))
    make_nuscenes_dataroot(root, occ_samples=every_keyframe)
    create_infos(
        str(root), "v1.0-fixture", str(root / "infos"), val_fraction=0.0, show_progress=False
    )
    return root / "infos" / "renderlss_infos_train.pkl"


def fixture_config(train_infos: Path, **unlabeled) -> DataConfig:
    return from_dict(
        DataConfig,
        dict(
            train_infos=str(train_infos),
            input_size=(12, 20),
            grid=dict(point_cloud_range=list(GRID.point_cloud_range), voxel_size=[2.0] * 3),
            classes=dict(CLASSES.__dict__),
            workers=0,
            batch_size=2,
            bev_aug=dict(rotate_range=(0.0, 0.0), flip_x_prob=0.0, flip_y_prob=0.0),
            targets=dict(sources=["lidar"], num_rays=8, ego_box=NO_EGO_BOX),
            unlabeled=unlabeled,
        ),
        "data",
    )


def test_scenes_are_chosen_reproducibly():
    names = [f"scene-{i:04d}" for i in range(10)]
    chosen = unlabeled_scene_names(names, 0.3, seed=4)
    assert len(chosen) == 3 and chosen <= set(names)
    assert unlabeled_scene_names(list(reversed(names)) * 2, 0.3, seed=4) == chosen
    others = {frozenset(unlabeled_scene_names(names, 0.3, seed)) for seed in range(20)}
    assert len(others) > 1


def test_marked_keyframes_never_leak_labels(fixture_infos):
    config = fixture_config(fixture_infos, keyframe_fraction=0.5, ratio=1.0, seed=0)
    _, records = training_records(config)
    marked = {info["scene_name"] for info in records if not is_labeled(info)}
    assert len(marked) == 1  # one of the two scenes, all of its keyframes
    assert all(is_labeled(info) is not (info["scene_name"] in marked) for info in records)
    assert all(not info["occ_path"] for info in records if not is_labeled(info))
    # The same keyframes with their labels, for the depth they must keep.
    plain = OccDataset(fixture_infos, fixture_config(fixture_infos), train=True)
    training = make_training_loader(config, seed=0, dist=ONE_PROCESS)
    labels = occ_labels((20, 20, 6))
    seen = 0
    for step, batch in enumerate(training.batches(0)):
        plain.set_epoch(step // training.batches_per_epoch)
        assert batch["labeled"].tolist() == [True, False]
        for b, meta in enumerate(batch["meta"]):
            if meta["labeled"]:
                np.testing.assert_array_equal(
                    batch["voxel_semantics"][b].numpy(), labels["semantics"]
                )
                continue
            assert meta["scene_name"] in marked
            assert (batch["voxel_semantics"][b] == IGNORE).all()
            assert not batch["mask_camera"][b].any() and not batch["mask_lidar"][b].any()
            assert (batch["targets"]["semantics"][b] == IGNORE).all()
            index = plain.index_of_token[meta["token"]]
            reference = plain[index]["targets"]["image_depth"]
            assert torch.equal(batch["targets"]["image_depth"][b], reference)
            rays = {k: v[b].numpy() for k, v in batch["targets"].items() if k != "image_depth"}
            assert (rays["depth"] > 0).all()
            ends = rays["origins"] + rays["dirs"] * (rays["depth"] / rays["z_per_t"])[:, None]
            # Targets sit at pixel centres: an end is off by at most ~1 pixel at its depth.
            dist = np.linalg.norm(ends[:, None] - LIDAR_POINTS_EGO[None], axis=2).min(axis=1)
            assert (dist < rays["depth"] / INTRINSIC[0][0] * 1.5).all()
            seen += 1
        if seen >= 3:
            break
    assert seen == 3


def test_training_split_of_evaluation_tools_has_labeled_keyframes_only(fixture_infos):
    config = fixture_config(fixture_infos, keyframe_fraction=0.5, ratio=1.0, seed=0)
    _, training = training_records(config)
    labeled_tokens = [info["token"] for info in training if is_labeled(info)]
    _, records = split_infos(config, "train")
    assert [info["token"] for info in records] == labeled_tokens
    assert all(info["occ_path"] for info in records)
    assert split_infos(fixture_config(fixture_infos), "train") == str(fixture_infos)


def test_unlabeled_infos_join_the_training_set(synthetic_root):
    config = from_dict(
        DataConfig,
        dict(
            train_infos=str(synthetic_root / "renderlss_infos_train.pkl"),
            input_size=(16, 24),
            grid=dict(
                point_cloud_range=[-12.8, -12.8, -1.0, 12.8, 12.8, 5.4], voxel_size=[1.6] * 3
            ),
            classes=dict(CLASSES.__dict__),
            workers=0,
            batch_size=3,
            targets=dict(sources=["lidar"], num_rays=16),
            unlabeled=dict(
                infos=[str(synthetic_root / "renderlss_infos_train_unlabeled.pkl")], ratio=2.0
            ),
        ),
        "data",
    )
    training = make_training_loader(config, seed=0, dist=ONE_PROCESS)
    assert training.batches_per_epoch == 2  # two labeled keyframes, one per batch
    batch = next(training.batches(0))
    assert batch["labeled"].tolist() == [True, False, False]
    assert batch["img"].shape[0] == 3
    assert (batch["voxel_semantics"][1:] == IGNORE).all()
    assert (batch["voxel_semantics"][0] != IGNORE).any()


def test_mixing_options_are_checked(fixture_infos):
    with pytest.raises(ValueError, match="whole number"):
        fixture_config(fixture_infos, keyframe_fraction=0.5, ratio=2.0)  # 2 / 3 labeled
    with pytest.raises(ValueError, match="keyframe_fraction"):
        fixture_config(fixture_infos, keyframe_fraction=1.0, ratio=1.0)
    with pytest.raises(ValueError, match="ratio"):
        fixture_config(fixture_infos, infos=["x.pkl"], ratio=0.0)
    with pytest.raises(ValueError, match="lidar"):
        from_dict(
            DataConfig,
            dict(targets=dict(sources=["oracle"]), unlabeled=dict(keyframe_fraction=0.5)),
            "data",
        )


def test_losses_over_unlabeled_samples_are_zero():
    logits = torch.randn(6, 18, requires_grad=True)
    loss = semantic_ce_loss(logits, torch.full((6,), IGNORE), ignore_index=IGNORE)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()
    volume = torch.randn(1, 18, 2, 2, 2, requires_grad=True)
    labels = torch.full((1, 2, 2, 2), IGNORE)
    loss = occupancy_ce_loss(
        volume, labels, torch.zeros(1, 2, 2, 2, dtype=torch.bool), None, IGNORE
    )
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(volume.grad).all()
