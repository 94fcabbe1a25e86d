"""Broken input files on the data side: each is refused with an error naming the file, the
sample and the field, at every entry that reads it (info building, the label builders, the
Dataset), and ``create_data --check-files`` lists all of them at once.

Dataroots are copies of tests/nuscenes_fixture.py's, broken by hand under tmp_path.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import load_tool
from nuscenes_fixture import INTRINSIC, LIDAR_POINTS, edit_record, make_nuscenes_dataroot, token
from PIL import Image

from renderlss.data.classes import load_classes
from renderlss.data.config import DataConfig, TargetConfig
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import MissingFileError, create_infos
from renderlss.geometry import validated_intrinsic
from renderlss.geometry.grid import VoxelGrid
from renderlss.records.files import read_rgb_image
from renderlss.records.infos import load_infos, save_infos
from renderlss.targets.lidar import DEFAULT_EGO_BOX, load_lidar_points
from renderlss.targets.sources import LidarTargetSource

VERSION = "v1.0-fixture"
CLASSES = load_classes(Path(__file__).resolve().parents[1] / "configs/_base_/occ3d_nuscenes.py")
# fx = fy = 16 > 0 and last row [0, 0, 1], but det = 16 * 16 - 8 * 32 = 0.
SINGULAR_BY_SKEW = [[16.0, 8.0, 16.0], [32.0, 16.0, 12.0], [0.0, 0.0, 1.0]]
FIRST_SAMPLE = token("sample", 0, 0)  # first keyframe of the first scene (train split)
CREATE_DATA = load_tool("create_data")


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    """The fixture dataroot, never modified (tests break copies of it)."""
    return make_nuscenes_dataroot(tmp_path_factory.mktemp("nuscenes") / "root")


@pytest.fixture(scope="module")
def clean_infos(clean_root, tmp_path_factory) -> tuple[dict, list[dict]]:
    """(metadata, infos) of the clean dataroot's train split (scene 0, 3 keyframes)."""
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(clean_root), VERSION, str(out), show_progress=False)
    return load_infos(out / "renderlss_infos_train.pkl")


@pytest.fixture
def root(clean_root, tmp_path) -> Path:
    """A copy of the dataroot that a test may break."""
    return Path(shutil.copytree(clean_root, tmp_path / "root"))


def infos_with_camera_matrix(clean_infos, tmp_path, camera: str, matrix) -> Path:
    """The train infos with ``camera`` of the first keyframe given ``matrix``, saved."""
    metadata, infos = clean_infos
    broken = pickle.loads(pickle.dumps(infos))
    broken[0]["cams"][camera]["cam_intrinsic"] = matrix
    path = tmp_path / "broken_infos.pkl"
    save_infos(path, metadata, broken)
    return path


def run_create_data(root: Path, out: Path, *flags: str) -> int:
    argv = ["--dataroot", str(root), "--version", VERSION, "--out-dir", str(out), *flags]
    return CREATE_DATA.main(argv)


# --- camera matrices ---


def test_a_camera_matrix_is_accepted_as_float64():
    matrix = validated_intrinsic(INTRINSIC, "k")
    assert matrix.dtype == np.float64 and matrix.tolist() == INTRINSIC


@pytest.mark.parametrize(
    ("matrix", "problem"),
    [
        ([[0.0, 0.0, 0.0], [0.0, 16.0, 12.0], [0.0, 0.0, 1.0]], "fx=0, fy=16"),
        ([[16.0, 0.0, np.nan], [0.0, 16.0, 12.0], [0.0, 0.0, 1.0]], "NaN or Inf"),
        ([[16.0, 0.0, 16.0], [0.0, 16.0, 12.0]], "shape [2, 3], expected 3x3"),
        ([[16.0, 0.0, 16.0], [0.0, -16.0, 12.0], [0.0, 0.0, 1.0]], "fx=16, fy=-16"),
        ([[16.0, 0.0, 16.0], [0.0, 16.0, 12.0], [0.0, 0.0, 2.0]], "last row [0.0, 0.0, 2.0]"),
        (SINGULAR_BY_SKEW, "is singular"),
        ([[16.0, 0.0], [0.0, 16.0, 12.0]], "not a 3x3 matrix of numbers"),
    ],
    ids=["zero-row", "nan", "2x3", "negative-fy", "last-row", "singular-skew", "ragged"],
)
def test_a_malformed_camera_matrix_is_named(matrix, problem):
    with pytest.raises(ValueError, match="^sample s, field 'k' ") as err:
        validated_intrinsic(matrix, "sample s, field 'k'")
    assert problem in str(err.value)


def test_info_building_names_table_camera_sample_and_field(root, tmp_path):
    calibration = token("calibrated_sensor", "CAM_BACK")
    edit_record(root, VERSION, "calibrated_sensor", calibration, camera_intrinsic=SINGULAR_BY_SKEW)
    with pytest.raises(ValueError, match="singular") as err:
        create_infos(str(root), VERSION, str(tmp_path / "out"), show_progress=False)
    message = str(err.value)
    assert f"calibrated_sensor.json: token {calibration}" in message
    assert f"sample {FIRST_SAMPLE}, camera CAM_BACK" in message
    assert "field 'camera_intrinsic'" in message


def test_dataset_names_camera_sample_and_field(clean_root, clean_infos, tmp_path):
    path = infos_with_camera_matrix(clean_infos, tmp_path, "CAM_FRONT_LEFT", SINGULAR_BY_SKEW)
    grid = VoxelGrid((-4.0, -4.0, -1.0, 4.0, 4.0, 1.4), (0.4, 0.4, 0.4))
    config = DataConfig(
        input_size=(12, 20), grid=grid, workers=0, classes=CLASSES, dataroot=str(clean_root)
    )
    dataset = OccDataset(path, config, train=False)
    with pytest.raises(ValueError, match="singular") as err:
        dataset[0]
    assert f"sample {FIRST_SAMPLE}, camera CAM_FRONT_LEFT: field 'cam_intrinsic'" in str(err.value)


def test_adjacent_keyframe_camera_is_checked_too(clean_root, clean_infos, tmp_path):
    # Keyframe 1's cameras are broken; keyframe 0 reads them only for its adjacent-frame rays.
    metadata, infos = clean_infos
    broken = pickle.loads(pickle.dumps(infos))
    for camera in broken[1]["cams"].values():
        camera["cam_intrinsic"] = SINGULAR_BY_SKEW
    path = tmp_path / "broken_infos.pkl"
    save_infos(path, metadata, broken)
    grid = VoxelGrid((-40.0, -40.0, -5.0, 40.0, 40.0, 5.0), (1.0, 1.0, 1.0))
    config = DataConfig(
        input_size=(12, 20),
        grid=grid,
        workers=0,
        classes=CLASSES,
        dataroot=str(clean_root),
        load_occ=False,
        targets=TargetConfig(sources=["lidar"], num_rays=4096, adjacent_keyframes=1),
    )
    with pytest.raises(ValueError, match="singular") as err:
        OccDataset(path, config, train=False)[0]
    assert f"sample {infos[1]['token']}, camera CAM_" in str(err.value)


def test_bevdet_infos_name_camera_and_field(clean_infos, tmp_path):
    _, infos = clean_infos
    record = pickle.loads(pickle.dumps(infos[1]))
    record["cams"]["CAM_BACK"]["cam_intrinsic"] = [[16.0, 0.0, 16.0], [0.0, 16.0, 12.0]]
    path = tmp_path / "bevdet.pkl"
    with open(path, "wb") as handle:  # no renderlss metadata: read as a BEVDet pickle
        pickle.dump(dict(infos=[record], metadata={}), handle)
    with pytest.raises(ValueError, match="shape") as err:
        load_infos(path)
    assert f"sample {record['token']}, camera CAM_BACK: field 'cam_intrinsic'" in str(err.value)


def built_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*.npz"))


@pytest.mark.parametrize(
    ("tool", "flags"),
    [
        ("make_dense_depth", ["--window-sweeps", "0", "--quiet"]),
        ("make_sam_labels", ["--masks", "slic", "--no-progress"]),
    ],
)
def test_builders_refuse_a_singular_camera_matrix(tool, flags, clean_infos, tmp_path, capsys):
    path = infos_with_camera_matrix(clean_infos, tmp_path, "CAM_BACK", SINGULAR_BY_SKEW)
    out = tmp_path / "out"
    code = load_tool(tool).main(["--infos", str(path), "--out", str(out), *flags])
    printed = capsys.readouterr().out
    assert code == 1
    assert f"sample {FIRST_SAMPLE}, camera CAM_BACK: field 'cam_intrinsic' is singular" in printed
    # Nothing of the broken keyframe is written; the other keyframes are.
    assert not [name for name in built_files(out) if name.endswith("-0-0.npz")]
    assert any(name.endswith("-0-1.npz") for name in built_files(out))


# --- images ---


def test_a_truncated_jpeg_is_refused_naming_the_file(clean_root, tmp_path):
    original = clean_root / "samples/CAM_FRONT/CAM_FRONT-0-0.jpg"
    data = original.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="JPEG file is truncated") as err:
        read_rgb_image(cut, "sample s")
    assert str(cut) in str(err.value) and "sample s" in str(err.value)
    # Zero padding after the end-of-image marker is no truncation.
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(data + bytes(16))
    np.testing.assert_array_equal(read_rgb_image(padded, "s"), np.asarray(Image.open(original)))


def test_an_image_of_another_size_is_refused(clean_root):
    path = clean_root / "samples/CAM_FRONT/CAM_FRONT-0-0.jpg"
    assert read_rgb_image(path, "s", (24, 32)).shape == (24, 32, 3)
    with pytest.raises(ValueError, match="image is 32x24, expected 30x20 \\(camera X\\)"):
        read_rgb_image(path, "camera X", (20, 30))


# --- LiDAR points ---


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "LiDAR file is empty"),
        (LIDAR_POINTS.tobytes()[:-4], "24 floats is not a whole number of 5-float points"),
        (np.where(LIDAR_POINTS == 30.0, np.nan, LIDAR_POINTS).tobytes(), "NaN or Inf"),
    ],
    ids=["empty", "truncated", "nan-intensity"],
)
def test_a_broken_point_file_is_named(content, problem, tmp_path):
    path = tmp_path / "points.pcd.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=problem) as err:
        load_lidar_points(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("with_lidarseg", [True, False])
def test_an_empty_point_file_is_blamed_not_its_labels(with_lidarseg, root, clean_infos):
    info = pickle.loads(pickle.dumps(clean_infos[1][0]))
    if not with_lidarseg:
        info["lidarseg_path"] = ""
    (root / info["lidar_path"]).write_bytes(b"")
    source = LidarTargetSource(root, np.zeros(256, np.uint8), 255, DEFAULT_EGO_BOX, 0.5)
    with pytest.raises(ValueError, match="LiDAR file is empty") as err:
        source(info, ["CAM_FRONT"])
    assert str(err.value).startswith(str(root / info["lidar_path"]))


def test_dense_depth_names_an_empty_sweep(root, tmp_path, capsys):
    create_infos(str(root), VERSION, str(tmp_path / "infos"), show_progress=False)
    sweep = root / "sweeps/LIDAR_TOP/lidar-sweep-0-1-0.pcd.bin"  # in keyframe 1's window
    sweep.write_bytes(b"")
    infos = tmp_path / "infos/renderlss_infos_train.pkl"
    code = load_tool("make_dense_depth").main(
        ["--infos", str(infos), "--out", str(tmp_path / "out"), "--window-sweeps", "1", "--quiet"]
    )
    assert code == 1
    assert f"{sweep}: LiDAR file is empty" in capsys.readouterr().out


# --- lidarseg files ---


LIDARSEG_GONE = ("lidar-0-1", "lidar-1-0")  # one keyframe of each scene


def remove_lidarseg_files(root: Path) -> list[Path]:
    paths = [
        root / f"lidarseg/{VERSION}/{token('sample_data', k)}_lidarseg.bin" for k in LIDARSEG_GONE
    ]
    for path in paths:
        path.unlink()
    return paths


def test_missing_lidarseg_files_are_all_listed(root, tmp_path, capsys):
    gone = remove_lidarseg_files(root)
    with pytest.raises(MissingFileError, match="lidarseg.json: 2 of its label files are missing"):
        create_infos(str(root), VERSION, str(tmp_path / "out"), show_progress=False)
    assert run_create_data(root, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert all(str(path) in err for path in gone) and "--skip-missing" in err


def test_skip_missing_skips_the_samples_without_lidarseg(root, tmp_path):
    gone = remove_lidarseg_files(root)
    report = create_infos(
        str(root), VERSION, str(tmp_path / "out"), skip_missing=True, show_progress=False
    )
    train, val = report.splits["train"], report.splits["val"]
    assert (train.samples, len(train.skipped), val.samples, len(val.skipped)) == (2, 1, 1, 1)
    assert str(gone[0]) in train.skipped[0] and token("sample", 0, 1) in train.skipped[0]
    assert str(gone[1]) in val.skipped[0] and token("sample", 1, 0) in val.skipped[0]
    _, infos = load_infos(train.path)
    assert [info["token"] for info in infos] == [token("sample", 0, 0), token("sample", 0, 2)]
    assert all(info["lidarseg_path"] for info in infos)


# --- create_data --check-files ---


def test_check_files_passes_a_clean_dataroot(root, tmp_path, capsys):
    assert run_create_data(root, tmp_path / "out", "--check-files") == 0
    # Each file once: scene 0 has 18 images + 3 keyframe + 6 sweep LiDAR files + 2 Occ3D
    # label files, scene 1 12 + 2 + 4 (earlier keyframes are sweeps of later ones too).
    assert "checked 47 files: 0 with problems" in capsys.readouterr().out


def test_check_files_lists_every_problem(root, tmp_path, capsys):
    cut_image = root / "samples/CAM_FRONT/CAM_FRONT-0-1.jpg"
    cut_image.write_bytes(cut_image.read_bytes()[:200])
    small_image = root / "samples/CAM_BACK/CAM_BACK-1-0.jpg"
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(small_image)
    empty_lidar = root / "samples/LIDAR_TOP/lidar-0-2.pcd.bin"
    empty_lidar.write_bytes(b"")
    cut_sweep = root / "sweeps/LIDAR_TOP/lidar-sweep-1-0-0.pcd.bin"
    cut_sweep.write_bytes(cut_sweep.read_bytes()[:-4])
    short_labels = root / f"lidarseg/{VERSION}/{token('sample_data', 'lidar-1-1')}_lidarseg.bin"
    short_labels.write_bytes(bytes(3))
    cut_occ = root / "gts" / "scene-0001" / token("sample", 0, 1) / "labels.npz"
    cut_occ.write_bytes(cut_occ.read_bytes()[:-40])

    assert run_create_data(root, tmp_path / "out", "--check-files") == 1
    captured = capsys.readouterr()
    assert "checked 47 files: 6 with problems" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    expected = [
        (token("sample", 0, 1), cut_image, "JPEG file is truncated"),
        (token("sample", 0, 1), cut_occ, "occupancy label file is corrupt"),
        (token("sample", 0, 2), empty_lidar, "LiDAR file is empty"),
        (token("sample", 1, 0), small_image, "image is 16x12, expected 32x24"),
        (token("sample", 1, 0), cut_sweep, "24 floats is not a whole number"),
        (token("sample", 1, 1), short_labels, "3 labels for 5 points"),
    ]
    assert len(errors) == len(expected)
    for (sample, path, problem), line in zip(expected, errors):
        assert line.startswith(f"error: sample {sample}: {path}: ") and problem in line
