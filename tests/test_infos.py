"""Info files from a hand-built nuScenes-format dataroot (tests/nuscenes_fixture.py)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes_fixture import (
    INTRINSIC,
    INTRINSIC_PIXEL_CORNERS,
    LIDAR_POINTS,
    T0,
    edit_record,
    make_nuscenes_dataroot,
    token,
)
from pyquaternion import Quaternion

from renderlss.data.info_builder import MissingFileError, create_infos
from renderlss.data.splits import fraction_split, split_scenes
from renderlss.io import atomic_save_npz, atomic_save_pickle, atomic_write_text
from renderlss.records.infos import InfoUnpickler, load_infos, save_infos

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import create_data  # noqa: E402

VERSION = "v1.0-fixture"


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    return make_nuscenes_dataroot(tmp_path_factory.mktemp("nuscenes") / "root")


@pytest.fixture(scope="module")
def built(dataroot, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos")
    report = create_infos(str(dataroot), VERSION, str(out), show_progress=False)
    train = load_infos(out / "renderlss_infos_train.pkl")
    val = load_infos(out / "renderlss_infos_val.pkl")
    return report, train, val, out


def test_devkit_loads_fixture(dataroot):
    nusc = NuScenes(version=VERSION, dataroot=str(dataroot), verbose=False)
    assert len(nusc.scene) == 2 and len(nusc.sample) == 5
    assert len(nusc.lidarseg) == 5 and len(nusc.sample_annotation) == 4
    sample = nusc.get("sample", token("sample", 0, 1))
    assert set(sample["data"]) == {
        "CAM_FRONT",
        "CAM_FRONT_RIGHT",
        "CAM_BACK_RIGHT",
        "CAM_BACK",
        "CAM_BACK_LEFT",
        "CAM_FRONT_LEFT",
        "LIDAR_TOP",
    }
    assert len(sample["anns"]) == 2
    points = np.fromfile(nusc.get_sample_data_path(sample["data"]["LIDAR_TOP"]), np.float32)
    np.testing.assert_array_equal(points.reshape(-1, 5), LIDAR_POINTS)


def test_splits_and_order(built):
    _, (train_meta, train), (val_meta, val), _ = built
    assert [i["scene_name"] for i in train] == ["scene-0001"] * 3
    assert [i["scene_name"] for i in val] == ["scene-0002"] * 2
    assert [i["token"] for i in train] == [token("sample", 0, k) for k in range(3)]
    assert [i["timestamp"] for i in train] == [T0, T0 + 500_000, T0 + 1_000_000]
    assert train[1]["prev"] == token("sample", 0, 0) and train[1]["next"] == token("sample", 0, 2)
    assert train[0]["prev"] == "" and train[2]["next"] == ""
    assert train_meta["split"] == "train" and val_meta["split"] == "val"
    assert train_meta["format"] == "renderlss-infos" and train_meta["format_version"] == 2
    assert train_meta["version"] == VERSION and train_meta["has_lidarseg"] is True
    assert train_meta["has_occ"] is True and val_meta["has_occ"] is False
    assert len(train_meta["cameras"]) == 6


def test_camera_pose_is_the_cameras_own(built):
    _, (_, train), _, _ = built
    info = train[0]
    # LiDAR keyframe at T0: ego at (100, 200, 0); CAM_FRONT fires 20 ms later at 10 m/s along +y.
    assert info["ego2global_translation"] == pytest.approx([100.0, 200.0, 0.0])
    front = info["cams"]["CAM_FRONT"]
    assert front["timestamp"] == T0 + 20_000
    assert front["ego2global_translation"] == pytest.approx([100.0, 200.2, 0.0])
    assert info["cams"]["CAM_BACK_LEFT"]["ego2global_translation"] == pytest.approx(
        [100.0, 200.6, 0.0]
    )
    assert front["ego2global_rotation"] == pytest.approx([np.sqrt(0.5), 0, 0, np.sqrt(0.5)])
    assert front["cam_intrinsic"] == INTRINSIC_PIXEL_CORNERS
    assert (front["width"], front["height"]) == (32, 24)
    assert front["data_path"] == "samples/CAM_FRONT/CAM_FRONT-0-0.jpg"
    # Camera looking forward: its z axis is ego x, its x axis is ego -y.
    rot = Quaternion(front["sensor2ego_rotation"]).rotation_matrix
    np.testing.assert_allclose(rot, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    assert front["sensor2ego_translation"] == pytest.approx([1.5, 0.0, 1.5])
    assert info["lidar2ego_translation"] == pytest.approx([0.9, 0.0, 1.8])
    assert info["lidar_path"] == "samples/LIDAR_TOP/lidar-0-0.pcd.bin"


def test_boxes_in_key_ego_frame(built):
    _, (_, train), (_, val), _ = built
    first, second = train[0], train[1]
    # Car at global (100, 210, 1), heading 120 deg; ego at (100, 200, 0) heading 90 deg:
    # 10 m straight ahead, yaw 30 deg; global velocity (5, 0) m/s is (0, -5) in the ego frame.
    np.testing.assert_allclose(
        first["gt_boxes"], [[10.0, 0.0, 1.0, 4.5, 2.0, 1.6, np.pi / 6]], atol=1e-5
    )
    np.testing.assert_allclose(first["gt_velocity"], [[0.0, -5.0]], atol=1e-5)
    assert first["gt_names"] == ["vehicle.car"]
    assert first["instance_tokens"] == [token("instance", "car")]
    assert first["num_lidar_pts"].tolist() == [7]
    assert first["gt_boxes"].dtype == np.float32 and first["num_lidar_pts"].dtype == np.int64
    # Second keyframe: ego at (100, 205, 0). Car at (102.5, 210, 1) -> (5, -2.5, 1);
    # pedestrian at (98, 207, 0.9) heading 90 deg -> (2, 2, 0.9), yaw 0, velocity unknown.
    order = np.argsort(second["gt_names"])  # human.* before vehicle.*
    np.testing.assert_allclose(
        second["gt_boxes"][order],
        [[2.0, 2.0, 0.9, 0.7, 0.6, 1.8, 0.0], [5.0, -2.5, 1.0, 4.5, 2.0, 1.6, np.pi / 6]],
        atol=1e-5,
    )
    velocity = second["gt_velocity"][order]
    assert np.all(np.isnan(velocity[0]))
    np.testing.assert_allclose(velocity[1], [0.0, -5.0], atol=1e-5)
    assert train[2]["gt_boxes"].shape == (1, 7)
    assert val[0]["gt_boxes"].shape == (0, 7) and val[0]["gt_velocity"].shape == (0, 2)


def test_boxes_agree_with_devkit(built, dataroot):
    """The devkit puts boxes in the LiDAR frame; taking them to ego must give our boxes."""
    _, (_, train), _, _ = built
    nusc = NuScenes(version=VERSION, dataroot=str(dataroot), verbose=False)
    for info in train:
        _, boxes, _ = nusc.get_sample_data(info["lidar_token"])
        lidar_rot = Quaternion(info["lidar2ego_rotation"])
        for box in boxes:
            box.rotate(lidar_rot)
            box.translate(np.asarray(info["lidar2ego_translation"]))
            i = info["instance_tokens"].index(
                nusc.get("sample_annotation", box.token)["instance_token"]
            )
            np.testing.assert_allclose(info["gt_boxes"][i, :3], box.center, atol=1e-5)
            np.testing.assert_allclose(info["gt_boxes"][i, 3:6], box.wlh[[1, 0, 2]], atol=1e-6)
            assert info["gt_boxes"][i, 6] == pytest.approx(
                box.orientation.yaw_pitch_roll[0], abs=1e-6
            )


def test_sweeps_newest_first_with_own_poses(built, dataroot, tmp_path):
    _, (_, train), _, _ = built
    sweeps = train[1]["sweeps"]
    t1 = T0 + 500_000
    # Two sweeps before keyframe 1, keyframe 0, then the two sweeps before it.
    assert [s["timestamp"] for s in sweeps] == [
        t1 - 50_000,
        t1 - 100_000,
        T0,
        T0 - 50_000,
        T0 - 100_000,
    ]
    assert sweeps[0]["ego2global_translation"] == pytest.approx([100.0, 204.5, 0.0])
    assert sweeps[0]["data_path"] == "sweeps/LIDAR_TOP/lidar-sweep-0-1-1.pcd.bin"
    assert sweeps[2]["data_path"] == "samples/LIDAR_TOP/lidar-0-0.pcd.bin"
    assert sweeps[0]["sensor2ego_translation"] == pytest.approx([0.9, 0.0, 1.8])
    create_infos(str(dataroot), VERSION, str(tmp_path), max_sweeps=3, show_progress=False)
    _, few = load_infos(tmp_path / "renderlss_infos_train.pkl")
    assert [len(i["sweeps"]) for i in few] == [2, 3, 3]


def test_label_paths(built, dataroot):
    _, (_, train), (_, val), _ = built
    for info in train + val:
        assert info["lidarseg_path"] == (f"lidarseg/{VERSION}/{info['lidar_token']}_lidarseg.bin")
        assert (dataroot / info["lidarseg_path"]).is_file()
    assert train[0]["lidarseg_path"] == (
        f"lidarseg/{VERSION}/{token('sample_data', 'lidar-0-0')}_lidarseg.bin"
    )
    assert train[0]["occ_path"] == f"gts/scene-0001/{token('sample', 0, 0)}/labels.npz"
    assert train[1]["occ_path"] == f"gts/scene-0001/{token('sample', 0, 1)}/labels.npz"
    assert train[2]["occ_path"] == "" and all(i["occ_path"] == "" for i in val)


def test_summary_and_files(built):
    report, _, _, out = built
    assert report.splits["train"].samples == 3 and report.splits["val"].samples == 2
    assert report.splits["train"].with_occ == 2 and report.splits["val"].with_occ == 0
    assert report.splits["train"].with_lidarseg == 3
    text = report.format()
    assert "3 samples from 1 scenes, 2 with Occ3D labels, 3 with lidarseg, 0 skipped" in text
    assert sorted(os.listdir(out)) == ["renderlss_infos_train.pkl", "renderlss_infos_val.pkl"]


def test_without_lidarseg_and_occ(tmp_path):
    root = make_nuscenes_dataroot(tmp_path / "root", with_lidarseg=False, occ_samples=())
    report = create_infos(str(root), VERSION, str(tmp_path / "out"), show_progress=False)
    meta, infos = load_infos(tmp_path / "out" / "renderlss_infos_train.pkl")
    assert meta["has_lidarseg"] is False and meta["has_occ"] is False
    assert all(i["lidarseg_path"] == "" and i["occ_path"] == "" for i in infos)
    assert "no Occ3D labels found" in report.format()


def test_official_mini_split(tmp_path):
    root = make_nuscenes_dataroot(
        tmp_path / "root", version="v1.0-mini", scene_names=("scene-0103", "scene-0061")
    )
    report = create_infos(str(root), "v1.0-mini", str(tmp_path / "out"), show_progress=False)
    assert set(report.splits) == {"mini_train", "mini_val"}
    _, mini_train = load_infos(tmp_path / "out" / "renderlss_infos_mini_train.pkl")
    _, mini_val = load_infos(tmp_path / "out" / "renderlss_infos_mini_val.pkl")
    # The fixture's second scene (2 keyframes) is scene-0061, an official mini_train scene.
    assert [i["scene_name"] for i in mini_train] == ["scene-0061"] * 2
    assert [i["scene_name"] for i in mini_val] == ["scene-0103"] * 3


def test_split_rules():
    splits, unassigned = split_scenes("v1.0-trainval", ["scene-0001", "scene-0003", "scene-9999"])
    assert splits == {"train": ["scene-0001"], "val": ["scene-0003"]}
    assert unassigned == ["scene-9999"]
    assert set(split_scenes("v1.0-test", ["scene-0077"])[0]) == {"test"}
    names = [f"s{i}" for i in range(8)]
    # Two val scenes out of eight: the middles of the blocks [0, 4) and [4, 8) -> s2, s6.
    assert fraction_split(names[::-1], 0.25) == {
        "train": ["s0", "s1", "s3", "s4", "s5", "s7"],
        "val": ["s2", "s6"],
    }
    assert fraction_split(["a", "b"], 0.25) == {"train": ["a"], "val": ["b"]}
    assert fraction_split(["a", "b"], 0.9) == {"train": ["a"], "val": ["b"]}
    assert fraction_split(["a"], 0.25) == {"train": ["a"], "val": []}
    assert fraction_split(["a", "b", "c"], 0.0) == {"train": ["a", "b", "c"], "val": []}
    with pytest.raises(ValueError, match="val_fraction"):
        fraction_split(["a"], 1.0)


def test_missing_dataroot_and_version(tmp_path, dataroot):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_infos(str(tmp_path / "nowhere"), VERSION, str(tmp_path), show_progress=False)
    with pytest.raises(
        FileNotFoundError, match=r"v1\.0-trainval.*versions found: \['v1\.0-fixture'\]"
    ):
        create_infos(str(dataroot), "v1.0-trainval", str(tmp_path), show_progress=False)


@pytest.mark.parametrize(
    "table, record",
    [
        ("calibrated_sensor", ("calibrated_sensor", "CAM_BACK")),
        ("ego_pose", ("ego_pose", "lidar-0-1")),
    ],
)
def test_non_unit_quaternion_is_named(tmp_path, table, record):
    root = make_nuscenes_dataroot(tmp_path / "root")
    bad = token(*record)
    edit_record(root, VERSION, table, bad, rotation=[1.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError) as err:
        create_infos(str(root), VERSION, str(tmp_path / "out"), show_progress=False)
    message = str(err.value)
    assert f"{table}.json" in message and bad in message and "rotation" in message
    assert "not unit length" in message
    assert not (tmp_path / "out" / "renderlss_infos_train.pkl").exists()


def test_missing_file_error_and_skip(tmp_path):
    root = make_nuscenes_dataroot(tmp_path / "root")
    missing = root / "samples" / "CAM_BACK" / "CAM_BACK-0-1.jpg"
    missing.unlink()
    with pytest.raises(MissingFileError) as err:
        create_infos(str(root), VERSION, str(tmp_path / "out"), show_progress=False)
    assert str(missing) in str(err.value) and token("sample", 0, 1) in str(err.value)
    report = create_infos(
        str(root), VERSION, str(tmp_path / "out"), skip_missing=True, show_progress=False
    )
    assert report.splits["train"].samples == 2 and len(report.splits["train"].skipped) == 1
    assert "1 skipped" in report.format() and token("sample", 0, 1) in report.format()
    _, infos = load_infos(tmp_path / "out" / "renderlss_infos_train.pkl")
    assert [i["token"] for i in infos] == [token("sample", 0, 0), token("sample", 0, 2)]


def test_cli(dataroot, tmp_path, capsys):
    with (
        pytest.raises(SystemExit) as exit_info,
        contextlib.redirect_stdout(io.StringIO()) as help_out,
    ):
        create_data.main(["--help"])
    assert exit_info.value.code == 0
    assert "--max-sweeps" in help_out.getvalue() and "--val-fraction" in help_out.getvalue()
    code = create_data.main(
        [
            "--dataroot",
            str(dataroot),
            "--version",
            VERSION,
            "--out-dir",
            str(tmp_path),
            "--prefix",
            "x",
        ]
    )
    assert code == 0
    assert "3 samples from 1 scenes" in capsys.readouterr().out
    assert (tmp_path / "x_infos_train.pkl").is_file() and (tmp_path / "x_infos_val.pkl").is_file()
    assert (
        create_data.main(
            ["--dataroot", str(tmp_path / "no"), "--version", VERSION, "--out-dir", str(tmp_path)]
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err


def _bevdet_info() -> dict:
    """A BEVDet v1 info record as written by mmdet3d<1.0 / BEVDet create_data."""
    cam = dict(
        data_path="./data/nuscenes/samples/CAM_FRONT/f.jpg",
        type="CAM_FRONT",
        sample_data_token="cam-sd",
        sensor2ego_translation=[1.5, 0.0, 1.5],
        sensor2ego_rotation=[0.5, -0.5, 0.5, -0.5],
        ego2global_translation=[100.0, 200.2, 0.0],
        ego2global_rotation=[np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)],
        timestamp=20,
        sensor2lidar_rotation=np.eye(3),
        sensor2lidar_translation=np.zeros(3),
        cam_intrinsic=np.array(INTRINSIC),
    )
    sweep = dict(
        data_path="/abs/nuscenes/sweeps/LIDAR_TOP/s.pcd.bin",
        type="lidar",
        sample_data_token="sweep-sd",
        sensor2ego_translation=[0.9, 0.0, 1.8],
        sensor2ego_rotation=[1.0, 0.0, 0.0, 0.0],
        ego2global_translation=[100.0, 199.5, 0.0],
        ego2global_rotation=[1.0, 0.0, 0.0, 0.0],
        timestamp=-50,
    )
    return dict(
        lidar_path="./data/nuscenes/samples/LIDAR_TOP/l.pcd.bin",
        token="tok",
        sweeps=[sweep],
        cams={"CAM_FRONT": cam},
        lidar2ego_translation=[0.9, 0.0, 1.8],
        lidar2ego_rotation=[1.0, 0.0, 0.0, 0.0],
        ego2global_translation=[100.0, 200.0, 0.0],
        ego2global_rotation=[np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)],
        timestamp=0,
        gt_boxes=np.zeros((1, 7)),
        gt_names=np.array(["car"]),
        scene_token="scene-tok",
        scene_name="scene-0001",
        occ_path="./data/nuscenes/gts/scene-0001/tok",
    )


def test_bevdet_pickle_is_normalised(tmp_path):
    path = tmp_path / "bevdet.pkl"
    with open(path, "wb") as handle:
        pickle.dump(dict(infos=[_bevdet_info()], metadata=dict(version="v1.0-trainval")), handle)
    meta, (info,) = load_infos(path)
    assert meta["version"] == "v1.0-trainval" and meta["dataroot"] == ""
    assert meta["cameras"] == ["CAM_FRONT"] and meta["has_occ"] is True
    assert info["lidar_path"] == "samples/LIDAR_TOP/l.pcd.bin"
    assert info["occ_path"] == "gts/scene-0001/tok/labels.npz"
    cam = info["cams"]["CAM_FRONT"]
    assert cam["data_path"] == "samples/CAM_FRONT/f.jpg"
    assert cam["ego2global_translation"] == [100.0, 200.2, 0.0]
    assert cam["cam_intrinsic"] == INTRINSIC_PIXEL_CORNERS and (cam["width"], cam["height"]) == (
        0,
        0,
    )
    assert info["sweeps"][0]["data_path"] == "/abs/nuscenes/sweeps/LIDAR_TOP/s.pcd.bin"
    assert info["sweeps"][0]["ego2global_translation"] == [100.0, 199.5, 0.0]
    assert info["scene_name"] == "scene-0001" and info["prev"] == "" and info["lidarseg_path"] == ""
    assert info["gt_boxes"].shape == (0, 7) and info["gt_names"] == []


def test_bevdet_pickle_missing_field_is_named(tmp_path):
    record = _bevdet_info()
    del record["cams"]["CAM_FRONT"]["sensor2ego_rotation"]
    path = tmp_path / "bevdet.pkl"
    atomic_save_pickle(path, dict(infos=[record], metadata=dict(version="v1.0-mini")))
    with pytest.raises(
        ValueError,
        match=r"bevdet\.pkl: sample tok, camera CAM_FRONT: missing field 'sensor2ego_rotation'",
    ):
        load_infos(path)


def test_other_layouts_are_refused(tmp_path):
    mmdet = tmp_path / "mmdet.pkl"
    atomic_save_pickle(mmdet, dict(metainfo=dict(version="v1.0-trainval"), data_list=[]))
    with pytest.raises(ValueError, match=r"mmdet3d>=1\.1.*data_list.*create_data"):
        load_infos(mmdet)
    odd = tmp_path / "odd.pkl"
    atomic_save_pickle(odd, [1, 2])
    with pytest.raises(ValueError, match="odd.pkl: expected dict"):
        load_infos(odd)
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps(dict(infos=[]))[:5])
    with pytest.raises(ValueError, match="broken.pkl: not a readable info pickle"):
        load_infos(broken)
    newer = tmp_path / "newer.pkl"
    save_infos(newer, dict(format="renderlss-infos", format_version=99), [])
    with pytest.raises(ValueError, match="format_version 99"):
        load_infos(newer)
    with pytest.raises(FileNotFoundError):
        load_infos(tmp_path / "absent.pkl")


def test_atomic_writes_leave_no_partial_file(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "first")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_save_pickle(target, Unpicklable())
    assert target.read_text() == "first"
    assert os.listdir(tmp_path / "sub") == ["file.txt"]
    atomic_save_npz(tmp_path / "a.npz", x=np.arange(3))
    with np.load(tmp_path / "a.npz") as data:
        assert data["x"].tolist() == [0, 1, 2]


class _RunsCode:
    """A pickle payload that would create a file when unpickled with plain ``pickle``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_info_pickles_cannot_run_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "hostile.pkl"
    path.write_bytes(pickle.dumps(dict(infos=[dict(token=_RunsCode(marker))], metadata={})))
    with pytest.raises(ValueError, match=r"refusing to load global pathlib.*Path") as err:
        load_infos(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    # The same payload runs under plain pickle: the test would notice a plain load.
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_info_pickles_keep_numpy_and_containers(tmp_path):
    metadata = dict(version="v1.0-mini", order=OrderedDict(a=1))
    arrays = dict(matrix=np.eye(4), scalar=np.float32(2.5), ints=np.arange(3, dtype=np.int64))
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(dict(metadata=metadata, infos=[dict(token="t", **arrays)])))
    with open(path, "rb") as handle:
        data = InfoUnpickler(handle).load()
    np.testing.assert_array_equal(data["infos"][0]["matrix"], np.eye(4))
    assert data["infos"][0]["scalar"] == np.float32(2.5)
    assert data["metadata"]["order"] == {"a": 1}
