"""LiDAR points the camera cannot see: a hand-made occluder and the synthetic oracle; the
measure of targets against an exact depth, by hand."""

import json

import numpy as np
import pytest
from helpers import load_tool

from renderlss.data.config import TargetConfig
from renderlss.data.info_builder import create_infos
from renderlss.data.render_targets import hidden_point_test
from renderlss.engine.evaluation import lidar_source
from renderlss.engine.experiment import load_experiment
from renderlss.eval.target_depth_quality import behind_truth, measure_target_depth
from renderlss.geometry import unproject_pixels
from renderlss.records.infos import load_infos
from renderlss.targets.lidar import HiddenPointTest, project_lidar_targets
from renderlss.targets.sources import LidarTargetSource

WIDTH, HEIGHT = 400, 40  # the radius is stated at 400 px: no scaling in the hand cases
K = np.array([[100.0, 0.0, 200.0], [0.0, 100.0, 20.0], [0.0, 0.0, 1.0]])


def points_at(pixels: list[tuple[int, int]], depth: float) -> np.ndarray:
    """[N, 3] camera-frame points seen at the centres of the (column, row) pixels."""
    uv = np.asarray(pixels, dtype=np.float64) + 0.5
    return unproject_pixels(uv, np.full(len(uv), depth), K)


def occluder_scene() -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """A near car (every fourth pixel of columns 190..210, rows 10..30, 2 m away), a ground
    point behind it seen between its points (10 m) and a wall point just right of its
    silhouette (10 m)."""
    car = [(c, r) for c in range(190, 211, 4) for r in range(10, 31, 4)]
    behind, beside = (200, 20), (213, 20)
    points = np.concatenate(
        [points_at(car, 2.0), points_at([behind], 10.0), points_at([beside], 10.0)]
    )
    return points, {"behind": behind, "beside": beside}


def target_pixels(points: np.ndarray, hidden: HiddenPointTest | None) -> dict:
    targets = project_lidar_targets(
        points, np.zeros(len(points), np.uint8), K, WIDTH, HEIGHT, 0.1, hidden
    )
    return {tuple(np.floor(uv).astype(int)): d for uv, d in zip(targets.uv, targets.depth)}


def test_a_point_surrounded_by_a_nearer_surface_is_dropped_one_beside_it_stays():
    points, named = occluder_scene()
    kept = target_pixels(points, None)
    assert kept[named["behind"]] == pytest.approx(10.0) and len(kept) == len(points)
    filtered = target_pixels(points, HiddenPointTest(radius=4))
    assert named["behind"] not in filtered
    assert filtered[named["beside"]] == pytest.approx(10.0)
    assert len(filtered) == len(points) - 1  # every car point stays
    # The window must reach the car's points on all four sides: with radius 1 the ground
    # point's quadrants hold no car point (the nearest are 2 pixels away) and it stays.
    assert named["behind"] in target_pixels(points, HiddenPointTest(radius=1))


def test_margin_keeps_points_only_slightly_behind():
    # Car points at 2 m around a point at 2.1 m: within the 10 % margin, not hidden.
    car = [(c, r) for c in range(190, 211, 4) for r in range(10, 31, 4)]
    points = np.concatenate([points_at(car, 2.0), points_at([(200, 20)], 2.1)])
    assert (200, 20) in target_pixels(points, HiddenPointTest(radius=4, margin=0.1))
    assert (200, 20) not in target_pixels(points, HiddenPointTest(radius=4, margin=0.01))


def test_radius_scales_with_the_image_width():
    test = HiddenPointTest(radius=8)
    assert [test.radius_for(w) for w in (400, 800, 1600, 100, 10)] == [8, 16, 32, 2, 1]


def test_config_builds_the_test_and_rejects_bad_values():
    assert hidden_point_test(TargetConfig()) is None
    built = hidden_point_test(TargetConfig(lidar_hidden_radius=8, lidar_hidden_min_sectors=3))
    assert built == HiddenPointTest(radius=8, margin=0.1, min_sectors=3)
    for bad in (dict(lidar_hidden_radius=-1), dict(lidar_hidden_min_sectors=5)):
        with pytest.raises(ValueError, match="lidar_hidden"):
            TargetConfig(**bad).validate("data.targets")
    with pytest.raises(ValueError, match="lidar_hidden_margin"):
        TargetConfig(lidar_hidden_margin=1.0).validate("data.targets")


def test_behind_means_behind_the_pixel_and_all_its_neighbours():
    truth = np.full((5, 6), 10.0, dtype=np.float32)
    truth[:, :3] = 2.0  # a near surface on the left half, its silhouette between columns 2, 3
    truth[0, 5] = 0.0  # unknown
    uv = np.array([[1.5, 2.5], [2.5, 2.5], [3.5, 2.5], [4.5, 2.5], [5.5, 0.5]])
    depth = np.array([5.0, 5.0, 12.0, 10.5, 50.0])
    # Behind the near surface; on its silhouette (a neighbour sees 10 m); behind the far one;
    # within the 10 % margin; unknown truth.
    assert behind_truth(depth, uv, truth).tolist() == [True, False, True, False, False]


def test_hidden_targets_of_the_synthetic_world_are_removed(synthetic_root, tmp_path):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    _, infos = load_infos(tmp_path / "renderlss_infos_train.pkl")
    plain = LidarTargetSource(synthetic_root, np.zeros(256, np.uint8), 255, (1, 1, 1, 0, 0, 0), 0.5)
    tested = LidarTargetSource(
        synthetic_root, np.zeros(256, np.uint8), 255, (1, 1, 1, 0, 0, 0), 0.5,
        HiddenPointTest(radius=8),
    )  # fmt: skip
    cameras = list(infos[0]["cams"])
    before = measure_target_depth(plain, infos, cameras, synthetic_root / "oracle").summary()
    after = measure_target_depth(tested, infos, cameras, synthetic_root / "oracle").summary()
    total, kept = before["all"]["targets"], after["all"]["targets"]
    behind = round(before["all"]["behind"] * total)
    kept_behind = round(after["all"]["behind"] * kept)
    assert behind >= 20  # the world has occluders the LiDAR sees past
    assert kept_behind <= 0.5 * behind
    # What it drops is mostly those: at most a few percent of the good targets go.
    assert total - kept - (behind - kept_behind) <= 0.05 * (total - behind)


def test_evaluation_scores_against_every_projected_point(tmp_path):
    config = load_experiment("configs/synthetic_2d.py", ["data.targets.lidar_hidden_radius=8"])
    assert hidden_point_test(config.data.targets) == HiddenPointTest(radius=8)
    assert lidar_source(config, tmp_path).hidden is None


def test_quality_tool_compares_each_setting_with_every_projected_point(synthetic_root, tmp_path):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    out = tmp_path / "quality.json"
    tool = load_tool("lidar_target_quality")
    overrides = [
        f"data.train_infos='{tmp_path / 'renderlss_infos_train.pkl'}'",
        f"data.dataroot='{synthetic_root}'",
    ]
    argv = ["configs/synthetic_2d.py", "--cfg-options", *overrides, "--radii", "8"]
    assert tool.main(argv + ["--out", str(out)]) == 0
    plain, tested = json.loads(out.read_text())["rows"]
    assert (plain["radius"], plain["removed"], plain["good_lost"]) == (0, 0.0, 0.0)
    assert tested["radius"] == 8 and 0.0 < tested["removed"] < 0.1
    assert tested["bands"]["all"]["behind"] < 0.5 * plain["bands"]["all"]["behind"]
    assert tested["bands"]["all"]["abs_rel"] < plain["bands"]["all"]["abs_rel"]
    assert tool.main(argv + ["--every", "0"]) == 2
