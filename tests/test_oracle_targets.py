"""The oracle target source against the oracle files it reads, and through the Dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from renderlss.data.classes import load_classes
from renderlss.data.config import DataConfig, TargetConfig
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import create_infos
from renderlss.geometry import compose, invert_pose, pose_matrix, transform_points
from renderlss.records.infos import load_infos
from renderlss.targets.oracle import OracleTargetSource, oracle_targets

CLASSES = load_classes("configs/_base_/occ3d_nuscenes.py")
SKY = 255


@pytest.fixture(scope="module")
def infos(synthetic_root, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("oracle_infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    path = out / "renderlss_infos_train.pkl"
    return path, load_infos(path)[1]


def read_oracle(root: Path, cam: str, cam_info: dict) -> tuple[np.ndarray, np.ndarray]:
    with np.load(root / "oracle" / cam / f"{Path(cam_info['data_path']).stem}.npz") as data:
        return data["depth"], data["semantics"]


def oracle_data_config(root: Path, records: list[dict], targets: TargetConfig) -> DataConfig:
    """The fixture's cameras at full size, no Occ3D labels, the given targets."""
    return DataConfig(
        dataroot=str(root),
        cameras=list(records[0]["cams"]),
        input_size=(90, 160),
        load_occ=False,
        classes=CLASSES,
        targets=targets,
    )


@pytest.mark.parametrize("stride", [1, 3])
def test_every_strided_non_sky_pixel_is_a_target(synthetic_root, infos, stride):
    info = infos[1][0]
    cameras = list(info["cams"])
    targets = OracleTargetSource(synthetic_root / "oracle", stride)(info, cameras)
    for cam in cameras:
        depth, semantics = read_oracle(synthetic_root, cam, info["cams"][cam])
        expected = [
            (i, j)
            for i in range(0, depth.shape[0], stride)
            for j in range(0, depth.shape[1], stride)
            if semantics[i, j] != SKY
        ]
        got = targets[cam]
        assert len(got) == len(expected) > 0
        rows = (got.uv[:, 1] - 0.5).astype(int)
        cols = (got.uv[:, 0] - 0.5).astype(int)
        np.testing.assert_array_equal(got.uv - 0.5, np.stack([cols, rows], axis=1))
        assert sorted(zip(rows.tolist(), cols.tolist())) == expected
        np.testing.assert_array_equal(got.depth, depth[rows, cols].astype(np.float32))
        np.testing.assert_array_equal(got.semantics, semantics[rows, cols])
        assert np.all(got.depth > 0) and np.all(got.confidence == 1.0)


def test_sky_pixels_are_left_out_by_hand():
    depth = np.array([[0.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    semantics = np.array([[SKY, 5], [7, 1]], dtype=np.uint8)
    targets = oracle_targets(depth, semantics, 1)
    np.testing.assert_array_equal(targets.uv, [[1.5, 0.5], [0.5, 1.5], [1.5, 1.5]])
    np.testing.assert_array_equal(targets.depth, [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(targets.semantics, [5, 7, 1])
    with pytest.raises(ValueError, match="stride"):
        oracle_targets(depth, semantics, 0)


def test_dataset_rays_end_on_the_oracle_surface(synthetic_root, infos):
    """A ray drawn from the oracle source, followed for its target depth, lands on the
    surface the oracle saw: projected back into its camera it falls in a pixel whose oracle
    depth is that depth."""
    path, records = infos
    targets = TargetConfig(sources=["oracle"], num_rays=500, oracle_stride=2)
    sample = OccDataset(path, oracle_data_config(synthetic_root, records, targets), train=False)[0]
    rays = {k: v.numpy() for k, v in sample["targets"].items()}
    assert np.all(rays["depth"] > 0) and np.all(rays["semantics"] != SKY)
    points = rays["origins"] + rays["dirs"] * (rays["depth"] / rays["z_per_t"])[:, None]
    info = records[0]
    key_ego2global = pose_matrix(info["ego2global_rotation"], info["ego2global_translation"])
    matched = np.zeros(len(points), dtype=bool)
    for cam, cam_info in info["cams"].items():
        cam2global = compose(
            pose_matrix(cam_info["ego2global_rotation"], cam_info["ego2global_translation"]),
            pose_matrix(cam_info["sensor2ego_rotation"], cam_info["sensor2ego_translation"]),
        )
        in_cam = transform_points(compose(invert_pose(cam2global), key_ego2global), points)
        uvw = in_cam @ np.asarray(cam_info["cam_intrinsic"]).T
        uv = uvw[:, :2] / uvw[:, 2:3]
        depth, _ = read_oracle(synthetic_root, cam, cam_info)
        cols, rows = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (in_cam[:, 2] > 0) & (cols >= 0) & (cols < 160) & (rows >= 0) & (rows < 90)
        hit = np.zeros(len(points), dtype=bool)
        hit[inside] = np.isclose(
            depth[rows[inside], cols[inside]], in_cam[inside, 2], rtol=1e-4, atol=1e-3
        )
        matched |= hit
    assert matched.all()


def test_the_oracle_source_reads_a_folder_of_the_users_own_maps(synthetic_root, infos, tmp_path):
    """data.targets.oracle_dir replaces <dataroot>/oracle: maps of depth 7 m everywhere give
    rays whose every target depth is 7 m."""
    path, records = infos
    for cam, cam_info in records[0]["cams"].items():
        depth, semantics = read_oracle(synthetic_root, cam, cam_info)
        (tmp_path / cam).mkdir()
        constant = np.where(semantics != SKY, 7.0, 0.0).astype(np.float32)
        np.savez(tmp_path / cam / f"{Path(cam_info['data_path']).stem}.npz", depth=constant,
                 semantics=semantics)  # fmt: skip
    targets = TargetConfig(sources=["oracle"], num_rays=200, oracle_dir=str(tmp_path))
    config = oracle_data_config(synthetic_root, records, targets)
    rays = OccDataset(path, config, train=False)[0]["targets"]
    np.testing.assert_array_equal(rays["depth"].numpy(), np.full(200, 7.0, np.float32))
