"""OccDataset and collate on the hand-built dataroot of tests/nuscenes_fixture.py."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from nuscenes_fixture import INTRINSIC_PIXEL_CORNERS, make_nuscenes_dataroot, occ_labels, token
from torch.utils.data import DataLoader

from renderlss.configuration import ConfigError, from_dict
from renderlss.data.classes import load_classes
from renderlss.data.collate import collate
from renderlss.data.config import DataConfig, ImageAugConfig
from renderlss.data.dataset import OccDataset, PackedRecords
from renderlss.data.info_builder import create_infos
from renderlss.geometry.grid import VoxelGrid
from renderlss.records.infos import load_infos

VERSION = "v1.0-fixture"
GRID = VoxelGrid((-4.0, -4.0, -1.0, 4.0, 4.0, 1.4), (0.4, 0.4, 0.4))  # 20 x 20 x 6
# 32 x 24 images -> factor 20 / 32 = 0.625, 20 x 15, eval keeps rows [1, 13) of the resized image.
INPUT_SIZE = (12, 20)
EVAL_IMG_AUG = [[0.625, 0.0, 0.0], [0.0, 0.625, -1.0], [0.0, 0.0, 1.0]]
BLOCK_CENTRE = (22.0, 8.0)  # (u, v) of the white block in every fixture image
FRONT_CAM2EGO_FIRST = [  # CAM_FRONT of the first keyframe, hand-computed (see test below)
    [0.0, 0.0, 1.0, 1.7],
    [-1.0, 0.0, 0.0, 0.0],
    [0.0, -1.0, 0.0, 1.5],
    [0.0, 0.0, 0.0, 1.0],
]


@pytest.fixture(scope="module")
def fixture_infos(tmp_path_factory):
    root = make_nuscenes_dataroot(tmp_path_factory.mktemp("nuscenes") / "root")
    out = root / "infos"
    create_infos(str(root), VERSION, str(out), show_progress=False)
    return root, out / "renderlss_infos_train.pkl"


# The Occ3D taxonomy of the fixture's labels (free = 17).
CLASSES = load_classes(Path(__file__).resolve().parents[1] / "configs/_base_/occ3d_nuscenes.py")


def make_config(**overrides) -> DataConfig:
    config = DataConfig(input_size=INPUT_SIZE, grid=GRID, workers=0, classes=CLASSES)
    return dataclasses.replace(config, **overrides)


def _block_centroid(image: torch.Tensor, config: DataConfig) -> np.ndarray:
    """(u, v) centroid of the bright block in one normalised [3, H, W] image."""
    std = torch.tensor(config.image_std)[:, None, None]
    mean = torch.tensor(config.image_mean)[:, None, None]
    weight = (image * std + mean).mean(0).numpy().astype(np.float64)
    weight[weight < 0.3 * weight.max()] = 0
    rows, cols = np.mgrid[0 : weight.shape[0], 0 : weight.shape[1]] + 0.5
    return np.array([(weight * cols).sum(), (weight * rows).sum()]) / weight.sum()


def test_eval_sample_hand_computed(fixture_infos):
    _, path = fixture_infos
    config = make_config()
    sample = OccDataset(path, config, train=False)[0]
    assert sample["img"].shape == (6, 3, *INPUT_SIZE) and sample["img"].dtype == torch.float32
    assert sample["intrinsic"].dtype == torch.float32 and sample["cam2ego"].shape == (6, 4, 4)
    np.testing.assert_allclose(sample["intrinsic"].numpy(), np.stack([INTRINSIC_PIXEL_CORNERS] * 6))
    np.testing.assert_allclose(sample["img_aug"].numpy(), np.stack([EVAL_IMG_AUG] * 6))
    np.testing.assert_allclose(sample["bev_aug"].numpy(), np.eye(4))
    # Key ego = ego at the LiDAR time. CAM_FRONT fires 20 ms later, 0.2 m further ahead:
    # its ego origin is at key-ego x = 0.2, plus the mounting (1.5, 0, 1.5).
    front = config.cameras.index("CAM_FRONT")
    np.testing.assert_allclose(sample["cam2ego"][front].numpy(), FRONT_CAM2EGO_FIRST, atol=1e-6)
    # CAM_BACK: 50 ms -> 0.5 m ahead, mounted at (-1, 0, 1.5), looking backwards.
    back = sample["cam2ego"][config.cameras.index("CAM_BACK")].numpy()
    np.testing.assert_allclose(back[:3, 3], [-0.5, 0.0, 1.5], atol=1e-6)
    np.testing.assert_allclose(back[:3, 2], [-1.0, 0.0, 0.0], atol=1e-6)
    # The white block at (22, 8) shows at img_aug @ (22, 8, 1) = (13.75, 4.0).
    for image in sample["img"]:
        np.testing.assert_allclose(_block_centroid(image, config), [13.75, 4.0], atol=0.3)
    meta = sample["meta"]
    assert meta["token"] == token("sample", 0, 0) and meta["scene_name"] == "scene-0001"
    assert meta["cameras"] == config.cameras and len(meta["image_paths"]) == 6
    assert Path(meta["image_paths"][front]).name == "CAM_FRONT-0-0.jpg"
    assert meta["lidar_path"].endswith("samples/LIDAR_TOP/lidar-0-0.pcd.bin")
    assert meta["sensor2ego"].dtype == np.float64 and meta["ego2global"].shape == (6, 4, 4)
    np.testing.assert_allclose(meta["ego2global"][front][:3, 3], [100.0, 200.2, 0.0])
    np.testing.assert_allclose(meta["lidar_ego2global"][:3, 3], [100.0, 200.0, 0.0])
    assert sample["targets"] == {}


def test_eval_labels_unchanged(fixture_infos):
    _, path = fixture_infos
    sample = OccDataset(path, make_config(), train=False)[1]
    truth = occ_labels(GRID.shape)
    assert sample["voxel_semantics"].dtype == torch.int64
    assert sample["mask_camera"].dtype == torch.bool and sample["mask_lidar"].shape == GRID.shape
    np.testing.assert_array_equal(sample["voxel_semantics"].numpy(), truth["semantics"])
    np.testing.assert_array_equal(sample["mask_lidar"].numpy(), truth["mask_lidar"] == 1)
    np.testing.assert_array_equal(sample["mask_camera"].numpy(), truth["mask_camera"] == 1)


def test_train_augmentation_is_consistent(fixture_infos):
    _, path = fixture_infos
    config = make_config(
        image_aug=ImageAugConfig(resize_range=(-0.05, 0.1), bottom_crop_range=(0.0, 0.1))
    )
    train = OccDataset(path, config, train=True)
    eval_cam2ego = OccDataset(path, config, train=False)[0]["cam2ego"].numpy()
    truth = occ_labels(GRID.shape)
    checked_dots = 0
    flips = set()
    for epoch in range(3):
        train.set_epoch(epoch)
        sample = train[0]
        bev = sample["bev_aug"].numpy().astype(np.float64)
        flips.add((bev[0, 0] < 0, bev[1, 1] < 0))
        # Cameras move with the BEV augmentation.
        np.testing.assert_allclose(sample["cam2ego"].numpy(), bev @ eval_cam2ego, atol=1e-5)
        # The block shows where img_aug sends it (when it is well inside the image).
        for image, img_aug in zip(sample["img"], sample["img_aug"].numpy()):
            expected = (img_aug @ [*BLOCK_CENTRE, 1.0])[:2]
            if 3 < expected[0] < INPUT_SIZE[1] - 3 and 3 < expected[1] < INPUT_SIZE[0] - 3:
                np.testing.assert_allclose(_block_centroid(image, config), expected, atol=0.35)
                checked_dots += 1
        # An ego point keeps its label: voxel centres of the original grid, moved by bev_aug,
        # land on a voxel with the same label wherever the neighbourhood is uniform.
        centres = GRID.voxel_centers().reshape(-1, 3)
        src_idx, _ = GRID.point_to_index(centres)
        label = truth["semantics"][tuple(src_idx.T)]
        uniform = np.ones(len(centres), dtype=bool)
        for dx in (-0.3, 0.3):
            for dy in (-0.3, 0.3):
                idx, inside = GRID.point_to_index(centres + [dx, dy, 0.0])
                idx = np.clip(idx, 0, np.asarray(GRID.shape) - 1)
                uniform &= inside & (truth["semantics"][tuple(idx.T)] == label)
        moved = centres @ bev[:3, :3].T + bev[:3, 3]
        dst_idx, inside = GRID.point_to_index(moved)
        keep = uniform & inside
        assert keep.sum() > 1000
        after = sample["voxel_semantics"].numpy()[tuple(dst_idx[keep].T)]
        np.testing.assert_array_equal(after, label[keep])
        # Voxels whose source lies outside the original grid are free and unobserved.
        came_from = (centres - bev[:3, 3]) @ bev[:3, :3]  # inverse of a rigid map
        _, from_inside = GRID.point_to_index(came_from)
        assert (~from_inside).sum() > 0  # the rotation turns grid corners out
        outside = ~from_inside.reshape(GRID.shape)
        assert np.all(sample["voxel_semantics"].numpy()[outside] == CLASSES.free_index)
        assert not sample["mask_lidar"].numpy()[outside].any()
        assert not sample["mask_camera"].numpy()[outside].any()
    assert checked_dots >= 6
    assert len(flips) > 1


def test_seeded_per_index_and_epoch(fixture_infos):
    _, path = fixture_infos
    a = OccDataset(path, make_config(seed=5), train=True)
    b = OccDataset(path, make_config(seed=5), train=True)
    a.set_epoch(2)
    b.set_epoch(2)
    first, again = a[1], b[1]
    for key in ("img", "img_aug", "cam2ego", "bev_aug", "voxel_semantics"):
        assert torch.equal(first[key], again[key]), key
    a.set_epoch(3)
    assert not torch.equal(a[1]["img_aug"], first["img_aug"])
    assert not torch.equal(b[0]["img_aug"], first["img_aug"])


def test_collate_and_loader(fixture_infos):
    _, path = fixture_infos
    dataset = OccDataset(path, make_config(), train=False)
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate)))
    assert batch["img"].shape == (2, 6, 3, *INPUT_SIZE)
    assert batch["voxel_semantics"].shape == (2, *GRID.shape)
    assert batch["bev_aug"].shape == (2, 4, 4)
    assert [m["token"] for m in batch["meta"]] == [token("sample", 0, 0), token("sample", 0, 1)]
    assert batch["targets"] == {}
    mixed = collate(
        [
            dict(x=torch.zeros(2), targets=dict(rays=torch.zeros(3, 2)), meta=dict(a=1)),
            dict(x=torch.ones(2), targets=dict(rays=torch.zeros(5, 2)), meta=dict(a=2)),
        ]
    )
    assert mixed["x"].tolist() == [[0, 0], [1, 1]]
    assert [r.shape[0] for r in mixed["targets"]["rays"]] == [3, 5]
    assert mixed["meta"] == [dict(a=1), dict(a=2)]
    with pytest.raises(ValueError, match="sample 1 has keys"):
        collate([dict(x=torch.zeros(1)), dict(y=torch.zeros(1))])


def flip_compressed_bytes(path: Path, member: str) -> None:
    """Invert a run of bytes inside the compressed data of one member of a zip archive,
    leaving the archive's directory intact."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    raw = bytearray(path.read_bytes())
    # The local header: 30 bytes, then the name and the extra field (lengths at 26 and 28).
    name_length = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    assert info.compress_size > 16
    for i in range(start + 2, start + 12):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_bad_files_are_named(tmp_path):
    root = make_nuscenes_dataroot(tmp_path / "root")
    create_infos(str(root), VERSION, str(tmp_path / "out"), show_progress=False)
    infos = load_infos(tmp_path / "out" / "renderlss_infos_train.pkl")
    dataset = OccDataset(infos, make_config(), train=False)
    image = root / "samples" / "CAM_FRONT" / "CAM_FRONT-0-0.jpg"
    image.write_bytes(b"not a jpeg")
    with pytest.raises(
        ValueError, match=f"{image}: image file cannot be decoded.*{token('sample', 0, 0)}"
    ):
        dataset[0]
    image.unlink()
    with pytest.raises(
        FileNotFoundError, match=f"{image}: image file missing.*{token('sample', 0, 0)}"
    ):
        dataset[0]
    labels = root / "gts" / "scene-0001" / token("sample", 0, 1) / "labels.npz"
    labels.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(
        ValueError, match=f"{labels}: occupancy label file is corrupt.*{token('sample', 0, 1)}"
    ):
        dataset[1]
    np.savez(labels, semantics=np.zeros((20, 20, 6), np.uint8), mask_lidar=np.zeros((20, 20, 6)))
    with pytest.raises(ValueError, match="field 'mask_camera' missing"):
        dataset[1]
    np.savez(labels, **occ_labels((10, 20, 6)))
    with pytest.raises(
        ValueError, match=r"'semantics' has shape \(10, 20, 6\), the label grid is \(20, 20, 6\)"
    ):
        dataset[1]
    # A valid archive whose compressed data is damaged: zlib fails on one array.
    np.savez_compressed(labels, **occ_labels((20, 20, 6)))
    flip_compressed_bytes(labels, "mask_lidar.npy")
    with pytest.raises(
        ValueError,
        match=f"{labels}: occupancy label file is corrupt \\(sample {token('sample', 0, 1)}, "
        "field 'mask_lidar'\\)",
    ):
        dataset[1]
    with pytest.raises(ValueError, match=f"sample {token('sample', 0, 2)} has no occ_path"):
        dataset[2]
    no_occ = OccDataset(infos, make_config(load_occ=False), train=False)[2]
    assert "voxel_semantics" not in no_occ


def test_relative_paths_need_a_dataroot(fixture_infos):
    root, path = fixture_infos
    metadata, infos = load_infos(path)
    dataset = OccDataset((dict(metadata, dataroot=""), infos), make_config(), train=False)
    with pytest.raises(ValueError, match="no dataroot is known; set data.dataroot"):
        dataset[0]
    moved = OccDataset(
        (dict(metadata, dataroot=""), infos), make_config(dataroot=str(root)), train=False
    )
    assert moved[0]["img"].shape[0] == 6


def test_config_schema():
    config = from_dict(
        DataConfig,
        dict(
            input_size=[128, 352],
            image_aug=dict(rotate_range=[-1, 1]),
            grid=dict(point_cloud_range=[-4, -4, -1, 4, 4, 1.4], voxel_size=[0.4, 0.4, 0.4]),
            classes=dict(occ_class_names=["a", "b"]),
        ),
        "data",
    )
    assert config.input_size == (128, 352) and config.image_aug.rotate_range == (-1.0, 1.0)
    assert config.grid.shape == (20, 20, 6) and config.classes.num_classes == 3
    assert config.image_aug.flip_prob == 0.5 and config.bev_aug.flip_x_prob == 0.5
    with pytest.raises(ConfigError, match=r"'data\.image_agu'.*did you mean 'data\.image_aug'"):
        from_dict(DataConfig, dict(image_agu={}), "data")
    with pytest.raises(ValueError, match="data.image_aug.rotate_range: lower bound"):
        from_dict(DataConfig, dict(image_aug=dict(rotate_range=[3, 1])), "data")
    with pytest.raises(ValueError, match="data.bev_aug.flip_y_prob"):
        from_dict(DataConfig, dict(bev_aug=dict(flip_y_prob=1.5)), "data")
    with pytest.raises(ValueError, match="data.cameras"):
        from_dict(DataConfig, dict(cameras=["CAM_FRONT", "CAM_FRONT"]), "data")


def test_packed_records_round_trip():
    records = [dict(a=1, b=np.arange(3, dtype=np.int64), c=dict(d="x")), dict(a=2)]
    packed = PackedRecords(records)
    assert len(packed) == 2 and packed[1] == dict(a=2)
    first = packed[0]
    np.testing.assert_array_equal(first["b"], [0, 1, 2])
    first["c"]["d"] = "changed"
    assert packed[0]["c"]["d"] == "x"
    with pytest.raises(IndexError):
        packed[2]
