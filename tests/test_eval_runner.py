"""The evaluation runner, its full-image rendering, the baselines and tools/test.py and
tools/pick_threshold.py, on a tiny synthetic world with a coarse grid.

Independent truths: the ground-truth labels turned into a volume score 100 %; a model that
looks up the oracle through independently computed camera poses scores zero depth error on
exactly the pixels counted by brute force; hand-counted baselines; two gloo processes give
the numbers of one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    TINY_NETWORK_OVERRIDES,
    free_port,
    load_tool,
    run_processes,
    save_untrained_checkpoint,
    set_torchrun_environment,
)
from pyquaternion import Quaternion
from torch import nn

from renderlss.configuration import ConfigError
from renderlss.data.classes import ClassesConfig
from renderlss.data.info_builder import create_infos
from renderlss.engine.build import load_trained_model
from renderlss.engine.evaluation import eval_dataset, evaluate, fit_baselines, sweep_thresholds
from renderlss.engine.experiment import load_experiment, training_data
from renderlss.engine.full_image import StridedGrid, rasterise_targets
from renderlss.eval.baselines import AllFreeBaseline, ColumnMajorityBaseline
from renderlss.eval.config import EvalConfig
from renderlss.eval.ray_iou import RayIoUConfig
from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.config import RenderConfig
from renderlss.ops.rays import Rays
from renderlss.ops.render import RenderOutput, render_rays
from renderlss.records.infos import load_infos
from renderlss.synthetic import generate_dataset, synthetic_config
from renderlss.targets.pixel_targets import PixelTargets
from renderlss.train.checkpoint import CheckpointError

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = str(REPO / "configs" / "synthetic_demo.py")
TINY_GRID = dict(
    point_cloud_range=(-19.2, -19.2, -1.0, 19.2, 19.2, 5.4), voxel_size=(1.6, 1.6, 0.8)
)
# A test-sized network on the tiny grid (the demo config, scaled down).
TINY_OVERRIDES = [
    *TINY_NETWORK_OVERRIDES,
    f"data.grid.point_cloud_range={TINY_GRID['point_cloud_range']}",
    f"data.grid.voxel_size={TINY_GRID['voxel_size']}",
]
# Coarse query rays keep RayIoU cheap; scoring is the same.
FAST_RAYS = RayIoUConfig(azimuth_step_deg=6.0)
SIGMA = 50.0  # density of labelled voxels in the label-volume model
WORLD_SIZE = 2


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """2 scenes x 2 keyframes, 96x54 images, labels on the coarse grid; infos in root/infos
    (one scene per split)."""
    root = tmp_path_factory.mktemp("eval_runner") / "root"
    config = synthetic_config(
        num_scenes=2,
        keyframes_per_scene=2,
        width=96,
        height=54,
        azimuth_steps=180,
        seed=3,
        grid=TINY_GRID,
    )
    generate_dataset(root, config, progress=False)
    create_infos(str(root), "v1.0-synthetic", str(root / "infos"), show_progress=False)
    return root


def tiny_overrides(root: Path) -> list[str]:
    infos = root / "infos"
    return TINY_OVERRIDES + [
        f"data.train_infos={str(infos / 'renderlss_infos_train.pkl')!r}",
        f"data.val_infos={str(infos / 'renderlss_infos_val.pkl')!r}",
    ]


def tiny_config(root: Path):
    return load_experiment(DEMO_CONFIG, tiny_overrides(root))


class LabelVolume(nn.Module):
    """The Occ3D labels as a volume: density SIGMA in labelled voxels, logits one-hot on their
    class (free included); ``shift`` rolls the labels along x to make an imperfect but
    deterministic model, ``density_shift`` rolls the density alone up in z (logits and
    density then disagree)."""

    def __init__(
        self, grid: VoxelGrid, free_index: int, shift: int = 0, density_shift: int = 0
    ) -> None:
        super().__init__()
        self.grid, self.free_index = grid, free_index
        self.shift, self.density_shift = shift, density_shift

    def volume(self, batch: dict) -> dict[str, torch.Tensor]:
        labels = torch.roll(batch["voxel_semantics"], self.shift, dims=1)
        occupied = labels != self.free_index
        one_hot = F.one_hot(labels.clamp(max=self.free_index), self.free_index + 1)
        shifted = torch.roll(occupied, self.density_shift, dims=3)
        density = (shifted.float() * SIGMA)[:, None]
        return dict(
            density=density,
            occupancy_density=density,
            logits=one_hot.permute(0, 4, 1, 2, 3).float(),
        )

    def render(self, predictions: dict, rays: dict) -> RenderOutput:
        return render_rays(
            predictions["density"],
            predictions["logits"],
            Rays(rays["origins"], rays["dirs"], rays["z_per_t"]),
            self.grid,
            RenderConfig(),
            training=False,
        )


def pose(rotation, translation) -> np.ndarray:
    matrix = Quaternion(rotation).transformation_matrix
    matrix[:3, 3] = translation
    return matrix


def key_from_camera(info: dict, cam: str) -> np.ndarray:
    """T_key-ego_from_camera straight from the info record with pyquaternion."""
    c = info["cams"][cam]
    ego_key = pose(info["ego2global_rotation"], info["ego2global_translation"])
    ego_cam = pose(c["ego2global_rotation"], c["ego2global_translation"])
    sensor = pose(c["sensor2ego_rotation"], c["sensor2ego_translation"])
    return np.linalg.inv(ego_key) @ ego_cam @ sensor


class OracleLookup(nn.Module):
    """Renders, for every ray, the oracle depth of the pixel the ray passes through: the
    camera is found by the ray's origin, the pixel by projecting a point of the ray."""

    def __init__(self, dataset, root: Path, cameras: list[str]) -> None:
        super().__init__()
        self.dataset, self.root, self.cameras = dataset, root, cameras

    def volume(self, batch: dict) -> dict[str, torch.Tensor]:
        (meta,) = batch["meta"]
        self.info = self.dataset.infos[self.dataset.index_of_token[meta["token"]]]
        shape = (1, 1, *self.dataset.config.grid.shape)
        return dict(
            density=torch.zeros(shape),
            occupancy_density=torch.zeros(shape),
            logits=torch.zeros(shape),
        )

    def render(self, predictions: dict, rays: dict) -> RenderOutput:
        origins = rays["origins"][0].double().numpy()
        points = origins + 10.0 * rays["dirs"][0].double().numpy()
        depth = np.full(len(origins), np.nan)
        for cam in self.cameras:
            to_key = key_from_camera(self.info, cam)
            mine = np.linalg.norm(origins - to_key[:3, 3], axis=1) < 1e-3
            p = (np.linalg.inv(to_key) @ np.c_[points[mine], np.ones(mine.sum())].T)[:3]
            uv = (np.asarray(self.info["cams"][cam]["cam_intrinsic"]) @ p)[:2] / p[2]
            stem = Path(self.info["cams"][cam]["data_path"]).stem
            oracle = np.load(self.root / "oracle" / cam / f"{stem}.npz")["depth"]
            depth[mine] = oracle[np.floor(uv[1]).astype(int), np.floor(uv[0]).astype(int)]
        assert not np.isnan(depth).any(), "a ray starts at no camera"
        r = len(depth)
        zeros = torch.zeros(1, r, 1)
        return RenderOutput(
            depth=torch.from_numpy(depth).float()[None],
            opacity=torch.ones(1, r),
            semantics=zeros,
            weights=zeros,
            t_starts=zeros,
            t_ends=zeros,
            num_samples=torch.tensor(0),
        )


def brute_force_oracle_count(dataset, root: Path, cameras, stride, eval_config) -> int:
    """Pixels (i, j) = (a * s + s // 2, b * s + s // 2) of whole s x s blocks whose oracle
    depth is inside the caps and whose surface point lies inside the grid."""
    grid = dataset.config.grid
    count = 0
    for index in range(len(dataset)):
        info = dataset.infos[index]
        for cam in cameras:
            c = info["cams"][cam]
            stem = Path(c["data_path"]).stem
            oracle = np.load(root / "oracle" / cam / f"{stem}.npz")["depth"]
            k_inv = np.linalg.inv(np.asarray(c["cam_intrinsic"]))
            to_key = key_from_camera(info, cam)
            for a in range(c["height"] // stride):
                for b in range(c["width"] // stride):
                    i, j = a * stride + stride // 2, b * stride + stride // 2
                    d = float(oracle[i, j])
                    if not eval_config.min_depth < d < eval_config.max_depth:
                        continue
                    p = to_key @ np.r_[d * (k_inv @ [j + 0.5, i + 0.5, 1.0]), 1.0]
                    count += bool(np.all((p[:3] >= grid.lower) & (p[:3] < grid.upper)))
    return count


# --------------------------------------------------------------------------- full images


def test_strided_grid_takes_the_middle_pixel_of_whole_blocks():
    grid = StridedGrid(height=10, width=7, stride=3)
    assert grid.shape == (3, 2)
    assert grid.pixel_rows().tolist() == [1, 4, 7] and grid.pixel_cols().tolist() == [1, 4]
    centres = grid.pixel_centres()
    assert centres.tolist()[:3] == [[1.5, 1.5], [4.5, 1.5], [1.5, 4.5]]
    image = np.arange(70).reshape(10, 7)
    assert grid.subsample(image).tolist() == [[8, 11], [29, 32], [50, 53]]
    picture = np.random.default_rng(0).uniform(0, 255, (10, 7, 3)).astype(np.float32)
    blocks = picture[:9, :6].reshape(3, 3, 2, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(grid.downscale(picture), blocks, rtol=1e-5)
    with pytest.raises(ValueError, match="stride 4"):
        StridedGrid(height=3, width=7, stride=4)


def test_rasterise_targets_keeps_the_nearest_point_per_block():
    rng = np.random.default_rng(1)
    grid = StridedGrid(height=12, width=16, stride=4)
    uv = rng.uniform(-2, 18, (300, 2))
    depth = rng.uniform(0, 30, 300).astype(np.float32)
    depth[::7] = 0  # no depth: never drawn
    targets = PixelTargets(uv, depth, rng.integers(0, 17, 300).astype(np.uint8), np.ones(300))
    got_depth, got_class = rasterise_targets(targets, grid, ignore_index=255)
    want_depth = np.zeros((3, 4), np.float32)
    want_class = np.full((3, 4), 255)
    for a in range(3):
        for b in range(4):
            best = math.inf
            for k in range(300):
                u, v = math.floor(uv[k, 0]), math.floor(uv[k, 1])
                inside = 0 <= u < 16 and 0 <= v < 12 and u // 4 == b and v // 4 == a
                if inside and 0 < depth[k] < best:
                    best, want_depth[a, b], want_class[a, b] = (
                        depth[k],
                        depth[k],
                        targets.semantics[k],
                    )
    np.testing.assert_array_equal(got_depth, want_depth)
    np.testing.assert_array_equal(got_class, want_class)


# --------------------------------------------------------------------------- baselines


def test_column_majority_baseline_by_hand():
    grid = VoxelGrid((0, 0, 0, 2, 1, 3), (1, 1, 1))
    classes = ClassesConfig(occ_class_names=["a", "b"], ignore_index=255)
    # [x, y=0, z] columns per frame; 2 = free, 255 = ignore.
    frames = [
        np.array([[[0, 2, 2]], [[1, 1, 2]]]),
        np.array([[[0, 1, 255]], [[2, 1, 2]]]),
        np.array([[[0, 1, 2]], [[1, 1, 2]]]),
    ]
    masks = [None, np.array([[[1, 1, 1]], [[0, 1, 1]]]), None]
    baseline = ColumnMajorityBaseline(grid, classes).fit(zip(frames, masks))
    # x=0: z0 occupied 3/3 (class a); z1 occupied 2/3, so occupied, and the column's classes
    # are a x3, b x2, so a; z2 never occupied. x=1: z0 occupied 2 of the 2 frames that see
    # it (frame 2 masks it), z1 3/3, column b x5; z2 free.
    assert baseline.predict().tolist() == [[[0, 0, 2]], [[1, 1, 2]]]
    assert AllFreeBaseline(grid, 2).predict().tolist() == [[[2, 2, 2]], [[2, 2, 2]]]
    with pytest.raises(ValueError, match="fit it"):
        ColumnMajorityBaseline(grid, classes).predict()


# --------------------------------------------------------------------------- the runner


def test_label_volume_scores_perfect_occupancy_and_baselines_score_zero(tiny_root):
    config = tiny_config(tiny_root)
    eval_config = EvalConfig(ray_iou=FAST_RAYS, lidar_depth=False, oracle=False)
    dataset = eval_dataset(config, config.data.val_infos)
    model = LabelVolume(config.data.grid, config.data.classes.free_index)
    train_set = eval_dataset(config, config.data.train_infos)
    result = evaluate(
        model, dataset, config, eval_config, baselines=fit_baselines(train_set, config, eval_config)
    )
    m = result.metrics
    assert m["num_samples"] == len(dataset) == 2
    assert m["mIoU_17_classes"] == 1.0 and m["mIoU_15_classes"] == 1.0
    assert m["geometry_IoU"] == 1.0 and m["RayIoU"] == 1.0
    assert m["baseline/all_free/mIoU_17_classes"] == 0.0
    assert m["baseline/all_free/RayIoU"] == 0.0
    assert 0.0 < m["baseline/column_majority/geometry_IoU"] < 1.0
    assert "model vs baselines" in result.tables
    # Every density threshold below SIGMA keeps the labels, any above empties the volume.
    sweep = sweep_thresholds(model, dataset, config, eval_config, [0.5, SIGMA - 1, SIGMA])
    assert [r.miou for r in sweep] == [1.0, 1.0, 0.0]


def test_rendered_depth_is_scored_against_the_predicted_occupancy(tiny_root):
    """The predicted occupancy's depth follows the rule that predicts occupancy (here the
    logits), the rendered depth the density: a model whose density sits one voxel layer
    above its logits renders nearer than the scene it predicts, and the agreement shows it."""
    config = tiny_config(tiny_root)
    dataset = eval_dataset(config, config.data.val_infos)
    free = config.data.classes.free_index
    eval_config = EvalConfig(ray_iou=FAST_RAYS, oracle=False, occupancy_rule="logits")
    one, split = (
        evaluate(LabelVolume(config.data.grid, free, density_shift=shift), dataset, config,
                 eval_config).metrics
        for shift in (0, 1)
    )  # fmt: skip
    assert one["depth/occupancy/num_valid"] == one["depth/lidar/num_valid"] > 1000
    occupancy = [k for k in one if k.startswith("depth/occupancy/")]
    assert [one[k] for k in occupancy] == [split[k] for k in occupancy]
    # The road's voxel layer ends 0.6 m above the road: entering it is short of the LiDAR.
    assert -0.5 < one["depth/occupancy/median_signed"] < -0.1
    assert split["depth/lidar/median_signed"] < one["depth/lidar/median_signed"] - 0.1
    assert split["depth/agreement/median_signed"] > one["depth/agreement/median_signed"] + 0.1


# Labels at twice the resolution in x, y and z with a margin of 2 fine voxels in x and y: the
# tiny grid nests in it at offset (2, 2, 0) and ratio (2, 2, 2).
FINE_LABEL_GRID = dict(
    point_cloud_range=(-20.8, -20.8, -1.0, 20.8, 20.8, 5.4), voxel_size=(0.8, 0.8, 0.4)
)
FINE_OVERRIDES = [
    f"data.label_grid.point_cloud_range={FINE_LABEL_GRID['point_cloud_range']}",
    f"data.label_grid.voxel_size={FINE_LABEL_GRID['voxel_size']}",
]
TWO_D_CONFIG = str(REPO / "configs" / "synthetic_2d.py")


def refine_labels(labels: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
    """Labels on FINE_LABEL_GRID that pool back to ``labels`` (on the tiny grid): each voxel
    becomes 2 x 2 x 2 sub-voxels, one of an occupied voxel's made free and one made another
    class (its class still the majority), one sub-voxel of an observed voxel observed, and
    random classes and masks in the margin."""
    free = 17
    shape = (52, 52, 16)
    semantics = rng.integers(0, free + 1, shape).astype(np.uint8)
    masks = {
        name: rng.integers(0, 2, shape).astype(np.uint8) for name in ("mask_lidar", "mask_camera")
    }
    inner = (slice(2, 50), slice(2, 50), slice(0, 16))
    coarse = labels["semantics"]
    fine = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    occupied = coarse != free
    fine[::2, ::2, ::2][occupied] = free
    fine[1::2, 1::2, 1::2][occupied] = (coarse[occupied] + 1) % free
    semantics[inner] = fine
    for name in masks:
        masks[name][inner] = 0
        masks[name][inner][1::2, ::2, 1::2] = labels[name]
    return dict(semantics=semantics, **masks)


def with_fine_labels(infos_path: Path, out: Path, rng) -> tuple[dict, list[dict]]:
    """The records of ``infos_path`` with their label files replaced by refined ones under
    ``out`` (absolute paths)."""
    metadata, records = load_infos(infos_path)
    for info in records:
        with np.load(Path(metadata["dataroot"]) / info["occ_path"]) as data:
            labels = {name: data[name] for name in data.files}
        path = out / info["token"] / "labels.npz"
        path.parent.mkdir(parents=True)
        np.savez_compressed(path, **refine_labels(labels, rng))
        info["occ_path"] = str(path)
    return metadata, records


def test_2d_only_config_without_load_occ_still_scores_occupancy(tiny_root):
    """Labels no loss reads are not loaded for training, and evaluation loads them anyway."""
    config = load_experiment(TWO_D_CONFIG, tiny_overrides(tiny_root) + ["data.load_occ=False"])
    assert not training_data(config).load_occ
    assert not training_data(load_experiment(TWO_D_CONFIG, tiny_overrides(tiny_root))).load_occ
    assert training_data(tiny_config(tiny_root)).load_occ  # the demo's 3D loss reads them
    eval_config = EvalConfig(ray_iou=FAST_RAYS, lidar_depth=False, oracle=False)
    dataset = eval_dataset(config, config.data.val_infos)
    model = LabelVolume(config.data.grid, config.data.classes.free_index)
    train_set = eval_dataset(config, config.data.train_infos)
    baselines = fit_baselines(train_set, config, eval_config)
    m = evaluate(model, dataset, config, eval_config, baselines=baselines).metrics
    assert m["mIoU_17_classes"] == 1.0 and m["RayIoU"] == 1.0
    assert m["baseline/all_free/RayIoU"] == 0.0
    assert 0.0 < m["baseline/column_majority/geometry_IoU"] < 1.0
    assert sweep_thresholds(model, dataset, config, eval_config, [0.5])[0].miou == 1.0


def test_labels_on_a_finer_larger_grid_pool_to_the_model_grid(tiny_root, tmp_path):
    rng = np.random.default_rng(5)
    infos = tiny_root / "infos"
    val = with_fine_labels(infos / "renderlss_infos_val.pkl", tmp_path / "val", rng)
    train = with_fine_labels(infos / "renderlss_infos_train.pkl", tmp_path / "train", rng)
    eval_config = EvalConfig(ray_iou=FAST_RAYS, lidar_depth=False, oracle=False)
    coarse = tiny_config(tiny_root)
    reference = evaluate(
        LabelVolume(coarse.data.grid, 17, shift=1),
        eval_dataset(coarse, coarse.data.val_infos),
        coarse,
        eval_config,
        baselines=fit_baselines(eval_dataset(coarse, coarse.data.train_infos), coarse, eval_config),
    ).metrics
    config = load_experiment(DEMO_CONFIG, tiny_overrides(tiny_root) + FINE_OVERRIDES)
    dataset = eval_dataset(config, val)
    pooled = dataset[0]
    with np.load(
        tiny_root / load_infos(infos / "renderlss_infos_val.pkl")[1][0]["occ_path"]
    ) as data:
        np.testing.assert_array_equal(pooled["voxel_semantics"].numpy(), data["semantics"])
        np.testing.assert_array_equal(pooled["mask_camera"].numpy(), data["mask_camera"] != 0)
    metrics = evaluate(
        LabelVolume(config.data.grid, 17, shift=1),
        dataset,
        config,
        eval_config,
        baselines=fit_baselines(eval_dataset(config, train), config, eval_config),
    ).metrics
    assert 0.1 < reference["mIoU_17_classes"] < 0.9
    np.testing.assert_equal(metrics, reference)  # NaN where the coarse labels give NaN

    # A label grid that does not nest: no Occ3D scores, and the report says why.
    shifted = FINE_OVERRIDES[1:] + [
        "data.label_grid.point_cloud_range=(-20.4, -20.8, -1.0, 21.2, 20.8, 5.4)"
    ]
    config = load_experiment(DEMO_CONFIG, tiny_overrides(tiny_root) + shifted)
    dataset = eval_dataset(config, val)
    assert not dataset.loads_occ and "voxel_semantics" not in dataset[0]
    blind = OracleLookup(dataset, tiny_root, list(config.data.cameras))  # reads no labels
    result = evaluate(blind, dataset, config, eval_config)
    assert "mIoU_17_classes" not in result.metrics
    assert "not on a label voxel boundary" in result.tables["Occ3D voxel IoU and RayIoU"]
    with pytest.raises(ValueError, match="no Occ3D labels to fit a baseline on: data.label_grid"):
        fit_baselines(eval_dataset(config, train), config, eval_config)
    # Label files of another shape than the label grid stop evaluation when it starts.
    with pytest.raises(ValueError, match=r"has shape \(52, 52, 16\), the label grid is"):
        eval_dataset(coarse, val)


def test_oracle_depth_is_rendered_at_the_oracle_pixels(tiny_root):
    config = tiny_config(tiny_root)
    eval_config = EvalConfig(ray_iou=FAST_RAYS, image_stride=3)
    dataset = eval_dataset(config, config.data.val_infos)
    cameras = list(config.data.cameras)
    result = evaluate(OracleLookup(dataset, tiny_root, cameras), dataset, config, eval_config)
    m = result.metrics
    expected = brute_force_oracle_count(dataset, tiny_root, cameras, 3, eval_config)
    assert expected > 500
    assert m["depth/oracle/num_valid"] == expected
    assert m["depth/oracle/abs_rel"] < 1e-6 and m["depth/oracle/delta1"] == 1.0
    # LiDAR points and the oracle see the same surfaces, up to where inside its pixel a point
    # falls: only rays grazing an edge may differ.
    assert m["depth/lidar/num_valid"] > 1000
    assert m["depth/lidar/delta1"] > 0.95, m


def _distributed_worker(rank: int, port: int, root: str, out_dir: str) -> None:
    set_torchrun_environment(rank, WORLD_SIZE, port)
    torch.set_num_threads(1)
    from renderlss.train.distributed import cleanup, init_distributed

    init_distributed(device="cpu")
    metrics = _shifted_label_evaluation(Path(root))
    if rank == 0:
        torch.save(metrics, Path(out_dir) / "metrics.pt")
    cleanup()


def _shifted_label_evaluation(root: Path) -> dict[str, float]:
    config = tiny_config(root)
    eval_config = EvalConfig(ray_iou=FAST_RAYS, image_stride=6, lidar_depth=False)
    dataset = eval_dataset(config, config.data.val_infos)
    model = LabelVolume(config.data.grid, config.data.classes.free_index, shift=1)
    return evaluate(model, dataset, config, eval_config).metrics


def test_two_processes_report_the_numbers_of_one(tiny_root, tmp_path):
    single = _shifted_label_evaluation(tiny_root)
    # An imperfect model, so that every metric has something to merge.
    assert 0.1 < single["mIoU_17_classes"] < 0.9 and single["depth/oracle/abs_rel"] > 0.01
    run_processes(
        _distributed_worker,
        (free_port(), str(tiny_root), str(tmp_path)),
        WORLD_SIZE,
        180,
        "the two-process evaluation",
    )
    merged = torch.load(tmp_path / "metrics.pt", weights_only=False)
    assert merged.keys() == single.keys()
    for key, value in single.items():
        # Counts merge exactly; depth sums up to float64 rounding.
        assert math.isclose(merged[key], value, rel_tol=1e-9) or (
            math.isnan(value) and math.isnan(merged[key])
        ), key


# --------------------------------------------------------------------------- configs, tools


def test_eval_overrides_and_unknown_keys():
    config = load_experiment(DEMO_CONFIG, ["eval.image_stride=8", "data.workers=0"])
    assert config.eval.image_stride == 8 and config.data.workers == 0
    assert config.eval.subset_exclude == ["others", "other_flat"]
    with pytest.raises(ConfigError, match="did you mean 'eval.image_stride'"):
        load_experiment(DEMO_CONFIG, ["eval.image_strid=8"])
    with pytest.raises(ConfigError, match="min_depth"):
        load_experiment(DEMO_CONFIG, ["eval.min_depth=0.0"])


def test_test_tool_and_threshold_tool(tiny_root, tmp_path, capsys):
    config = tiny_config(tiny_root)
    checkpoint = save_untrained_checkpoint(config, tmp_path / "step_000000.pth")
    fast = ["eval.image_stride=6", f"eval.ray_iou.azimuth_step_deg={FAST_RAYS.azimuth_step_deg}"]
    options = ["--cfg-options", *tiny_overrides(tiny_root), *fast]
    common = [DEMO_CONFIG, str(checkpoint), "--device", "cpu", "--no-progress"]
    out = tmp_path / "metrics.json"
    assert load_tool("test").main([*common, "--out", str(out), "--baselines", *options]) == 0
    record = json.loads(out.read_text())
    assert record["split"] == "val" and record["eval"]["image_stride"] == 6
    metrics = record["metrics"]
    for key in ("mIoU_17_classes", "mIoU_15_classes", "RayIoU", "RayIoU@1", "IoU/car"):
        assert key in metrics
    for key in ("depth/lidar/abs_rel", "depth/oracle/abs_rel", "depth_per_image/oracle/rmse"):
        assert metrics[key] > 0
    assert metrics["num_samples"] == 2
    assert "baseline/column_majority/mIoU_17_classes" in metrics
    # The untrained volume renders too little depth: biased near.
    assert metrics["depth/lidar/median_signed"] < -0.3
    for source in ("lidar", "oracle"):
        assert metrics[f"baseline/depth_prior/depth/{source}/abs_rel"] > 0
        assert (
            metrics[f"baseline/depth_prior/depth/{source}/num_valid"]
            == metrics[f"depth/{source}/num_valid"]
        )
    printed = capsys.readouterr().out
    assert "Occ3D voxel IoU" in printed and "model vs baselines" in printed
    assert "depth: model vs images-blind prior (percent)" in printed

    pick = load_tool("pick_threshold")
    assert pick.main([*common, "--split", "val", *options]) == 2
    assert "refusing" in capsys.readouterr().err
    table = tmp_path / "thresholds.json"
    thresholds = ["--thresholds", "0", "0.5", "1e9", "--out", str(table)]
    assert pick.main([*common, *thresholds, *options]) == 0
    record = json.loads(table.read_text())
    assert record["split"] == "train" and len(record["table"]) == 3
    # Nothing is denser than 1e9 per metre: an empty prediction has IoU 0 for every class.
    assert record["table"][2]["mIoU_17_classes"] == 0.0
    assert "best:" in capsys.readouterr().out

    # The depth breakdown scores the pixels test.py scores, with the same pooled AbsRel.
    breakdown = tmp_path / "breakdown.json"
    assert load_tool("depth_breakdown").main([*common, "--out", str(breakdown), *options]) == 0
    tables = json.loads(breakdown.read_text())["tables"]
    pooled = tables["all"]["all pixels"]
    assert pooled["count"] == metrics["depth/oracle/num_valid"]
    assert pooled["abs_rel"] == pytest.approx(metrics["depth/oracle/abs_rel"], rel=1e-4)
    for grouping in ("class", "distance", "opacity", "rendered surface's voxel label"):
        parts = tables[grouping].values()
        assert sum(r["count"] for r in parts) == pooled["count"]
        assert sum(r["contribution"] for r in parts) == pytest.approx(pooled["abs_rel"])
    assert "car" in tables["class"] and "rendered depth by distance" in capsys.readouterr().out


def test_checkpoint_that_does_not_fit_names_the_file(tiny_root, tmp_path):
    config = tiny_config(tiny_root)
    checkpoint = save_untrained_checkpoint(config, tmp_path / "tiny.pth")
    wider = load_experiment(
        DEMO_CONFIG, tiny_overrides(tiny_root) + ["model.head.hidden_channels=6"]
    )
    with pytest.raises(CheckpointError, match=r"tiny\.pth: field 'model' does not fit"):
        load_trained_model(wider, checkpoint, "model", "cpu")
    with pytest.raises(CheckpointError, match=r"tiny\.pth: field 'ema' is empty"):
        load_trained_model(config, checkpoint, "ema", "cpu")
