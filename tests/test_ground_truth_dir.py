"""Evaluation against the user's own ground truth: a folder of per-image depth (and
optionally class) maps, ``<dir>/<CAM>/<image stem>.npz``, used wherever the oracle is."""

from __future__ import annotations

import numpy as np
import pytest

from renderlss.data.info_builder import create_infos
from renderlss.engine.evaluation import _depth_scorers
from renderlss.eval.config import EvalConfig
from renderlss.labels.dense_depth import dense_depth_config
from renderlss.labels.depth_quality import evaluate_against_oracle
from renderlss.records.files import output_path
from renderlss.records.infos import load_infos
from renderlss.records.oracle import ground_truth_folder, load_ground_truth, load_oracle


def write_map(folder, cam, image_path, **fields) -> None:
    path = output_path(folder, cam, image_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **fields)


def test_a_depth_only_file_is_read_and_bad_fields_are_named(tmp_path):
    depth = np.array([[0.0, 2.5], [10.0, 80.0]], dtype=np.float32)
    write_map(tmp_path, "CAM_FRONT", "samples/CAM_FRONT/a.jpg", depth=depth)
    path = tmp_path / "CAM_FRONT" / "a.npz"
    read, semantics = load_ground_truth(path, "sample s0 CAM_FRONT", (2, 2))
    assert semantics is None and np.array_equal(read, depth)
    with pytest.raises(ValueError, match="'semantics'"):
        load_oracle(path, "sample s0 CAM_FRONT")  # the synthetic oracle needs both maps
    for bad, message in [
        (dict(depth=depth.astype(np.uint16)), "'depth' must be float"),
        (dict(depth=-depth), "'depth' holds negative"),
        (dict(depth=depth, semantics=np.zeros((2, 2), np.int32)), "'semantics' must be uint8"),
        (dict(depth=depth, semantics=np.zeros((3, 2), np.uint8)), "'semantics' has shape"),
    ]:
        np.savez(path, **bad)
        with pytest.raises(ValueError, match=message) as err:
            load_ground_truth(path, "sample s0 CAM_FRONT", (2, 2))
        assert "a.npz" in str(err.value) and "sample s0" in str(err.value)


def test_the_folder_is_chosen_over_the_oracle_and_a_missing_one_is_an_error(tmp_path):
    root = tmp_path / "root"
    assert ground_truth_folder(root) is None
    assert _depth_scorers(EvalConfig(), str(root), "cpu", None).oracle is None
    mine = tmp_path / "mine"
    mine.mkdir()
    assert ground_truth_folder(root, mine) == mine
    assert _depth_scorers(EvalConfig(ground_truth_dir=str(mine)), "", "cpu", None).oracle
    (root / "oracle").mkdir(parents=True)
    assert ground_truth_folder(root) == root / "oracle"
    assert ground_truth_folder(root, mine) == mine
    with pytest.raises(FileNotFoundError, match="eval.ground_truth_dir"):
        ground_truth_folder(root, tmp_path / "absent")


def test_dense_depth_is_scored_against_the_given_folder(synthetic_root, tmp_path):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    _, infos = load_infos(tmp_path / "renderlss_infos_train.pkl")
    infos, cameras = infos[:1], ["CAM_FRONT"]
    # The user's truth: the oracle depth doubled, no semantics. A depth d scored against 2 d
    # has AbsRel |d - 2 d| / 2 d = 0.5, so AbsRel ~0.5 shows the folder was read.
    truth_dir = tmp_path / "truth"
    image_path = infos[0]["cams"]["CAM_FRONT"]["data_path"]
    depth, _ = load_oracle(output_path(synthetic_root / "oracle", "CAM_FRONT", image_path), "")
    write_map(truth_dir, "CAM_FRONT", image_path, depth=2 * depth)
    config = dense_depth_config(visibility_radius=3, window_sweeps=2)
    args = (infos, synthetic_root, config, cameras, [0], False)
    against_oracle = evaluate_against_oracle(*args)["d + visibility filter"]
    against_mine = evaluate_against_oracle(*args, ground_truth_dir=truth_dir)
    visible = against_mine["d + visibility filter"]
    assert against_oracle["abs_rel"] < 0.05
    assert visible["abs_rel"] == pytest.approx(0.5, abs=0.03)
    assert visible["coverage"] == pytest.approx(against_oracle["coverage"])
    assert visible["dynamic_coverage"] == 0.0  # no semantics: no pixel counts as dynamic
