"""The teacher-student loop: which rays become pseudo labels, the measured-depth lift, label-
free unlabeled samples, the teacher as the EMA of the saved students, and resuming it."""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers import (
    RENDERED_LOSS_ONLY_OVERRIDES,
    TINY_NETWORK_OVERRIDES,
    free_port,
    run_processes,
    set_torchrun_environment,
)
from torch import nn

import renderlss.models.occupancy_net as occupancy_net_module
from renderlss.configuration import ConfigError, to_dict
from renderlss.data.collate import collate
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import create_infos
from renderlss.data.unlabeled import strip_labels
from renderlss.engine.build import build_model
from renderlss.engine.experiment import load_experiment
from renderlss.engine.teacher_student import (
    pseudo_voxel_region,
    pseudo_weight_factor,
    student_view,
    teacher_student_terms,
    voxel_region_bins,
)
from renderlss.engine.trainer import Trainer, train
from renderlss.geometry.grid import VoxelGrid
from renderlss.models.objective import loss_terms
from renderlss.models.pseudo_labels import (
    bins_up_to_surface,
    frustum_visibility,
    pseudo_ray_losses,
    ray_pseudo_labels,
    voxel_pseudo_labels,
)
from renderlss.records.infos import load_infos, save_infos
from renderlss.train.checkpoint import load_checkpoint
from renderlss.train.distributed import cleanup
from renderlss.train.ema import EmaMomentum, ModelEMA

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "synthetic_demo.py"
ONLY_2D = REPO / "configs" / "synthetic_2d.py"
# The tiny network on a coarse grid with few rays; the teacher on from the first step with
# every ray kept, so that its pseudo losses shape every step.
LOOP_OVERRIDES = [
    *RENDERED_LOSS_ONLY_OVERRIDES,
    *TINY_NETWORK_OVERRIDES,
    "data.grid.point_cloud_range=(-12.8,-12.8,-1.0,12.8,12.8,5.4)",
    "data.grid.voxel_size=(1.6,1.6,1.6)",
    "data.targets.num_rays=128",
    "data.batch_size=2",
    "train.warmup_steps=2",
    "train.lr=1e-3",
    "train.log_interval=100",
    "train.teacher.enabled=True",
    "train.teacher.momentum_warm_steps=0",
    "train.teacher.max_momentum=0.9",
    "train.teacher.confidence_threshold=0.0",
    "train.teacher.opacity_threshold=0.0",
    "train.teacher.pseudo_voxel_weight=1.0",
    "train.teacher.voxel_confidence_threshold=0.0",
]


@pytest.fixture(scope="module")
def semi_infos(synthetic_root, tmp_path_factory) -> Path:
    """The tiny training split with every keyframe but the first unlabeled."""
    out = tmp_path_factory.mktemp("semi_infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    metadata, infos = load_infos(out / "renderlss_infos_train.pkl")
    path = out / "semi.pkl"
    save_infos(path, metadata, [infos[0]] + [strip_labels(info) for info in infos[1:]])
    return path


def loop_config(infos: Path, work_dir: Path, *extra: str):
    return load_experiment(
        DEMO,
        [
            *LOOP_OVERRIDES,
            f"data.train_infos={str(infos)!r}",
            f"train.work_dir={str(work_dir)!r}",
            *extra,
        ],
    )


def test_filter_keeps_exactly_the_rays_above_the_thresholds():
    # Classes 0..3, free = 3; thresholds: class probability 0.9, opacity 0.8.
    probabilities = torch.tensor(
        [
            [0.95, 0.03, 0.01, 0.01],  # kept
            [0.85, 0.05, 0.05, 0.05],  # probability too low
            [0.02, 0.96, 0.01, 0.01],  # opacity too low
            [0.01, 0.01, 0.01, 0.97],  # free
            [0.01, 0.01, 0.97, 0.01],  # kept: opacity exactly at the threshold
            [0.91, 0.03, 0.03, 0.03],  # kept
        ]
    )
    semantics = probabilities.log()[None]  # [1, 6, 4]: softmax gives the probabilities back
    opacity = torch.tensor([[0.99, 0.99, 0.5, 0.99, 0.8, 0.95]])
    teacher_depth = torch.tensor([[5.0, 6.0, 7.0, 8.0, 9.0, 10.0]])
    measured = torch.tensor([[0.0, 7.0, 0.0, 0.0, 0.0, 3.0]])
    aware = ray_pseudo_labels(semantics, opacity, teacher_depth, measured, 0.9, 0.8, 3, True)
    assert aware.keep.tolist() == [[True, False, False, False, True, True]]
    assert aware.semantics.tolist() == [[0, 0, 1, 3, 2, 0]]
    # Measured depth replaces the teacher's and keeps its ray for depth (ray 1).
    assert aware.depth.tolist() == [[5.0, 7.0, 7.0, 8.0, 9.0, 3.0]]
    assert aware.depth_keep.tolist() == [[True, True, False, False, True, True]]
    blind = ray_pseudo_labels(semantics, opacity, teacher_depth, measured, 0.9, 0.8, 3, False)
    assert torch.equal(blind.keep, aware.keep) and torch.equal(blind.depth_keep, blind.keep)
    assert torch.equal(blind.depth, teacher_depth)

    # Sample 0 labeled (its student outputs must not matter), sample 1 unlabeled.
    labels = ray_pseudo_labels(
        semantics.expand(2, -1, -1),
        opacity.expand(2, -1),
        teacher_depth.expand(2, -1),
        measured.expand(2, -1),
        0.9,
        0.8,
        3,
        True,
    )
    log_errors = torch.tensor([0.1, -0.2, 0.0, 0.0, 0.3, 0.0])  # on rays 0, 1, 4, 5
    student_depth = torch.stack([torch.rand(6) * 40, aware.depth[0] * log_errors.exp()])
    student_semantics = torch.stack([torch.randn(6, 4) * 5, torch.zeros(6, 4)])
    losses = pseudo_ray_losses(
        student_semantics, student_depth, labels, torch.tensor([False, True]), None, 0.85, 1e-3
    )
    # Uniform student logits: CE log 4 on each kept ray.
    assert losses["pseudo_semantic"].item() == pytest.approx(math.log(4.0))
    # SILog over g = (0.1, -0.2, 0.3, 0): E[g] = 0.05, E[g^2] = 0.035.
    expected = math.sqrt(0.035 - 0.85 * 0.05**2)
    assert losses["pseudo_depth"].item() == pytest.approx(expected, rel=1e-5)


def test_pseudo_weights_ramp_after_the_start():
    assert [pseudo_weight_factor(s, 10, 4) for s in (0, 9, 10, 11, 13, 50)] == [
        0.0,
        0.0,
        0.25,
        0.5,
        1.0,
        1.0,
    ]
    assert pseudo_weight_factor(10, 10, 0) == 1.0


def test_measured_depth_puts_the_lifted_mass_in_its_bin(synthetic_root, tmp_path, monkeypatch):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    config = loop_config(tmp_path / "renderlss_infos_train.pkl", tmp_path)
    # 11 uniform bins over [1, 45] m, 4 m wide: 10 m is bin 2, 20 m bin 4, 30 m bin 7.
    assert config.model.depth.bins.num_bins == 11 and config.model.neck.out_stride == 8
    batch = collate([OccDataset(config.data.train_infos, config.data, train=False)[0]])
    measured = torch.zeros(1, len(config.data.cameras), *config.data.input_size)
    measured[0, 0, 5, 9] = 10.0  # feature cell (0, 1)
    measured[0, 0, 17, 41] = 30.0  # two points in cell (2, 5): the nearer one counts
    measured[0, 0, 22, 44] = 20.0
    measured[0, 1, 30, 60] = 50.0  # beyond d_max: cell (3, 7) keeps the predicted one
    lifted = []

    def recording_splat(depth, *args, **kwargs):
        lifted.append(depth)
        return splat(depth, *args, **kwargs)

    splat = occupancy_net_module.splat_depth_context
    monkeypatch.setattr(occupancy_net_module, "splat_depth_context", recording_splat)
    model = build_model(config).eval()
    with torch.no_grad():
        predictions = model.volume(batch, measured)
    depth = lifted[0][0]  # [N, D, h, w]
    predicted = predictions["depth_logits"].softmax(dim=1)  # [N, D, h, w]
    one_hot = torch.eye(11)
    assert torch.equal(depth[0, :, 0, 1], one_hot[2])
    assert torch.equal(depth[0, :, 2, 5], one_hot[4])
    measured_cells = torch.zeros_like(depth[:, 0], dtype=torch.bool)
    measured_cells[0, 0, 1] = measured_cells[0, 2, 5] = True
    keep = ~measured_cells.unsqueeze(1).expand_as(depth)
    assert torch.equal(depth[keep], predicted[keep])


def test_surface_region_stops_at_each_cells_surface():
    # Two feature cells, five bins 1 m apart along x, one voxel row each (y 0 and y 1).
    grid = VoxelGrid(point_cloud_range=(0.0, -0.5, -0.5, 6.0, 1.5, 0.5), voxel_size=(1.0,) * 3)
    x = torch.arange(5, dtype=torch.float32) + 0.5
    points = torch.zeros(1, 1, 5, 1, 2, 3)
    points[..., 0] = x.view(5, 1, 1)
    points[..., 0, 1, 1] = 1.0
    distribution = torch.zeros(1, 5, 1, 2)
    distribution[0, 2, 0, 0] = 1.0  # cell 0: a one-hot at bin 2
    # cell 1: mass before each bin 0, 0.1, 0.4, 0.45, 0.6: the surface is bin 3
    distribution[0, :, 0, 1] = torch.tensor([0.1, 0.3, 0.05, 0.15, 0.4])
    region = bins_up_to_surface(distribution)
    assert region[0, :, 0, 0].tolist() == [True, True, True, False, False]
    assert region[0, :, 0, 1].tolist() == [True, True, True, True, False]
    visible = frustum_visibility(points, grid, region.unsqueeze(0))[0, :, :, 0]
    assert visible[:, 0].tolist() == [True, True, True, False, False, False]
    assert visible[:, 1].tolist() == [True, True, True, True, False, False]
    whole = frustum_visibility(points, grid)[0, :, :, 0]
    assert whole.tolist() == [[True, True]] * 5 + [[False, False]]


def test_surface_region_reads_the_measured_bins_when_depth_aware(synthetic_root, tmp_path):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    config = loop_config(tmp_path / "renderlss_infos_train.pkl", tmp_path)
    batch = collate([OccDataset(config.data.train_infos, config.data, train=False)[0]])
    image_depth = torch.zeros(1, len(config.data.cameras), *config.data.input_size)
    image_depth[0, 0, 5, 9] = 10.0  # feature cell (0, 1), bin 2 of 11 uniform 4 m bins
    batch["targets"]["image_depth"] = image_depth
    model = build_model(config).eval()
    with torch.no_grad():
        depth_logits = model.volume(batch)["depth_logits"]
    teacher = config.train.teacher
    assert voxel_region_bins(model, batch, depth_logits, teacher) is None
    surface = dataclasses.replace(teacher, voxel_region="surface")
    region = voxel_region_bins(model, batch, depth_logits, surface)[0]  # [N, D, h, w]
    assert region[0, :, 0, 1].tolist() == [True] * 3 + [False] * 8
    # Elsewhere each cell's median bin of the predicted softmax, counted here bin by bin.
    probabilities = depth_logits.softmax(dim=1)[0, :, 3, 3].tolist()
    median = next(d for d in range(11) if sum(probabilities[: d + 1]) >= 0.5)
    assert region[0, :, 3, 3].tolist() == [d <= median for d in range(11)]
    blind = dataclasses.replace(surface, depth_aware=False)
    probabilities = depth_logits.softmax(dim=1)[0, :, 0, 1].tolist()
    median = next(d for d in range(11) if sum(probabilities[: d + 1]) >= 0.5)
    region = voxel_region_bins(model, batch, depth_logits, blind)[0]
    assert region[0, :, 0, 1].tolist() == [d <= median for d in range(11)]


def test_voxel_filter_keeps_confident_voxels_and_drops_free_on_measured_surfaces():
    # Four voxels in a row, classes 0..2 with free = 2, threshold 0.8.
    probabilities = torch.tensor(
        [
            [0.90, 0.05, 0.05],  # kept
            [0.05, 0.05, 0.90],  # free: kept, unless the voxel is a measured surface
            [0.50, 0.40, 0.10],  # not confident
            [0.05, 0.90, 0.05],  # confident, outside the region
        ]
    )
    logits = probabilities.log().T.reshape(1, 3, 4, 1, 1)
    region = torch.tensor([True, True, True, False]).view(1, 4, 1, 1)
    labels, keep = voxel_pseudo_labels(logits, region, 0.8)
    assert labels.flatten().tolist() == [0, 2, 0, 1]
    assert keep.flatten().tolist() == [True, True, False, False]
    _, measured_keep = voxel_pseudo_labels(logits, region, 0.8, exclude_class=2)
    assert measured_keep.flatten().tolist() == [True, False, False, False]


def test_measured_region_is_where_the_unlabeled_lidar_rays_end(synthetic_root, tmp_path):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    config = load_experiment(
        ONLY_2D,
        [
            *TINY_NETWORK_OVERRIDES,
            "data.load_occ=False",
            "data.targets.adjacent_keyframes=0",
            "data.grid.point_cloud_range=(-12.8,-12.8,-1.0,12.8,12.8,5.4)",
            "data.grid.voxel_size=(1.6,1.6,1.6)",
            "data.targets.num_rays=128",
            "data.targets.query_rays=512",
            "model.loss.class_counts=''",
            f"data.train_infos={str(tmp_path / 'renderlss_infos_train.pkl')!r}",
            "train.teacher.enabled=True",
            "train.teacher.ray_depth_on_unlabeled=True",
            "train.teacher.voxel_region='measured'",
            "train.teacher.pseudo_voxel_weight=1.0",
            "train.teacher.voxel_confidence_threshold=0.0",
        ],
    )
    teacher = config.train.teacher
    dataset = OccDataset(config.data.train_infos, config.data, train=False)
    mixed = collate([dataset[0], dataset[1]])
    labeled = torch.tensor([True, False])
    torch.manual_seed(0)
    model = build_model(config).eval()
    view = student_view(mixed, labeled, config.data, teacher)
    with torch.no_grad():
        predictions, rendered = model(view)
    region = pseudo_voxel_region(model, mixed, predictions["depth_logits"], predictions, teacher)

    # Independently: the voxel just behind each measured surface of the unlabeled sample's
    # query rays (the occupied points lie within a quarter voxel behind it).
    grid = model.grid
    rays = mixed["query_targets"]
    depth = rays["depth"][1].float()
    t = depth / rays["z_per_t"][1].float() + 0.125 * min(grid.voxel_size)
    points = rays["origins"][1].float() + t[:, None] * rays["dirs"][1].float()
    low = torch.tensor(grid.point_cloud_range[:3])
    cell = torch.floor((points - low) / torch.tensor(grid.voxel_size)).long()
    inside = (depth > 0) & ((cell >= 0) & (cell < torch.tensor(grid.shape))).all(dim=-1)
    expected = torch.zeros(grid.shape, dtype=torch.bool)
    expected[tuple(cell[inside].T)] = True
    assert int(expected.sum()) > 20

    def grown(mask: torch.Tensor) -> torch.Tensor:  # one voxel of tolerance each way
        return torch.nn.functional.max_pool3d(mask[None, None].float(), 3, 1, 1)[0, 0] > 0

    assert bool((region[1] <= grown(expected)).all()) and bool((expected <= grown(region[1])).all())
    assert int((region[1] & expected).sum()) >= 0.9 * int(expected.sum())

    # The loss: the unlabeled sample's measured voxels whose teacher class is not free. The
    # teacher calls every other voxel (in x) free, so that both kinds are there.
    free = config.data.classes.free_index
    teacher_model = copy.deepcopy(model)
    volume = teacher_model.volume

    def half_free_volume(batch: dict, measured: torch.Tensor | None = None) -> dict:
        out = volume(batch, measured)
        out["logits"][:, free, ::2] += 100.0
        return out

    teacher_model.volume = half_free_volume
    terms, monitors = teacher_student_terms(
        teacher_model,
        mixed,
        labeled,
        predictions,
        rendered,
        teacher,
        config.data,
        {},
        (0.85, 1e-3),
        1.0,
    )
    with torch.no_grad():
        teacher_logits = half_free_volume(mixed, mixed["targets"]["image_depth"])["logits"]
    classes = teacher_logits[1].argmax(dim=0)
    kept = region[1] & (classes != free)
    assert 0 < int(kept.sum()) < int(region[1].sum())
    student = predictions["logits"][1].movedim(0, -1)[kept]
    expected_loss = torch.nn.functional.cross_entropy(student, classes[kept])
    assert terms["pseudo_voxel"].item() == pytest.approx(expected_loss.item(), rel=1e-5)
    share = monitors["teacher/voxel_kept_share"]
    assert share.tolist() == [float(kept.sum()), float(region[1].sum())]

    # Without the ray-query voxel labels there is no measured region to read.
    with pytest.raises(ValueError, match="query_sampling='voxel'"):
        pseudo_voxel_region(model, mixed, predictions["depth_logits"], {}, teacher)


def test_unlabeled_samples_add_no_supervised_loss(synthetic_root, tmp_path):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    config = loop_config(tmp_path / "renderlss_infos_train.pkl", tmp_path)
    dataset = OccDataset(config.data.train_infos, config.data, train=False)
    samples = [dataset[0], dataset[1]]
    generator = torch.Generator().manual_seed(0)
    for sample in samples:  # hand-made 3D labels: the unlabeled one keeps its labels here
        shape = config.data.grid.shape
        sample["voxel_semantics"] = torch.randint(0, 18, shape, generator=generator)
        sample["mask_camera"] = torch.ones(shape, dtype=torch.bool)
    loss = dataclasses.replace(
        config.model.loss,
        occ3d_weight=1.0,
        occ3d_density_weight=1.0,
        query_weight=1.0,
        query_semantic_weight=1.0,
    )
    model_config = dataclasses.replace(config.model, loss=loss)
    torch.manual_seed(0)
    model = build_model(config).eval()  # eval: every sample's outputs are its own
    model.config = model_config

    def supervised(batch: dict) -> dict[str, float]:
        with torch.no_grad():
            predictions, rendered = model(batch)
        terms = loss_terms(predictions, rendered, batch, model_config, {}, 255, config.data.grid)
        # Distortion and opacity entropy regularise every ray and read no label.
        return {k: v.item() for k, v in terms.items() if k not in ("distortion", "entropy")}

    mixed = collate(samples)
    labeled = torch.tensor([True, False])
    view = student_view(mixed, labeled, config.data, config.train.teacher)
    alone = supervised(collate(samples[:1]))
    assert set(alone) >= {"depth", "semantic", "lss_depth", "occ3d", "occ3d_density", "query"}
    assert supervised(view) == pytest.approx(alone, rel=1e-5)
    assert supervised(mixed) != pytest.approx(alone, rel=1e-5)  # the labels were there
    # Strong view: only the unlabeled sample's pixels change, and not its geometry.
    assert torch.equal(view["img"][0], mixed["img"][0])
    assert not torch.equal(view["img"][1], mixed["img"][1])
    for key in ("img_aug", "intrinsic", "cam2ego"):
        assert view[key] is mixed[key]
    for key in ("origins", "dirs", "z_per_t"):
        assert view["targets"][key] is mixed["targets"][key]
    # The LiDAR depth map as the lifting target: it returns, and only lss_depth reads it.
    measured = mixed["targets"]["image_depth"]
    assert bool((measured[1] > 0).any())
    lifting = dataclasses.replace(config.train.teacher, lifting_depth_on_unlabeled=True)
    lifted = student_view(mixed, labeled, config.data, lifting)
    assert torch.equal(lifted["targets"]["image_depth"], measured)
    with_lidar = supervised(lifted)
    assert with_lidar.pop("lss_depth") != pytest.approx(alone["lss_depth"], rel=1e-3)
    unlifted = {k: v for k, v in alone.items() if k != "lss_depth"}
    assert with_lidar == pytest.approx(unlifted, rel=1e-5)
    # Its rays' LiDAR depth for the depth and ray-query terms; their classes stay removed.
    ray_depth = dataclasses.replace(config.train.teacher, ray_depth_on_unlabeled=True)
    measured_rays = student_view(mixed, labeled, config.data, ray_depth)
    for rays in ("targets", "query_targets"):
        if rays in mixed:
            assert torch.equal(measured_rays[rays]["depth"], mixed[rays]["depth"])
            assert (measured_rays[rays]["semantics"][1] == 255).all()
    with_rays = supervised(measured_rays)
    # The query points before its surfaces are free: query_semantic learns the free class.
    read = ("depth", "query", "query_semantic")
    for name in read:
        assert with_rays.pop(name) != pytest.approx(alone[name], rel=1e-5), name
    assert with_rays == pytest.approx({k: v for k, v in alone.items() if k not in read}, rel=1e-5)


def test_teacher_is_the_ema_of_the_saved_students_and_resumes_bit_identically(semi_infos, tmp_path):
    whole = tmp_path / "whole"
    steps = ["train.max_steps=3", "train.checkpoint_interval=1", "train.keep_last=10"]
    result = train(loop_config(semi_infos, whole, *steps), log=lambda line: None)
    assert all(h["skipped"] == 0.0 for h in result.history)
    assert any(h["pseudo_semantic"] > 0 for h in result.history)
    assert any("teacher/kept_share" in h for h in result.history)

    # The teacher after step s (0-based) is m(s) t + (1 - m(s)) student_s, with
    # m(s) = min(0.9, 1 - 1 / (s + 1)) (warm 0): computed here in float64.
    students = [load_checkpoint(whole / f"step_{s:06d}.pth")["model"] for s in (1, 2, 3)]
    expected = {k: v.double() for k, v in students[0].items() if v.is_floating_point()}
    for step, student in enumerate(students[1:], start=1):
        m = min(0.9, 1 - 1 / (step + 1))
        expected = {k: m * v + (1 - m) * student[k].double() for k, v in expected.items()}
    final = load_checkpoint(whole / "step_000003.pth")
    teacher = final["ema"]["module"]
    assert final["ema"]["last_step"] == 2
    parameters = dict(build_model(loop_config(semi_infos, whole)).named_parameters())
    for name in parameters:
        assert torch.allclose(teacher[name].double(), expected[name], rtol=1e-5, atol=1e-6), name
    assert not torch.equal(
        teacher["head.semantic_mlp.0.weight"], students[-1]["head.semantic_mlp.0.weight"]
    )
    for name, value in students[-1].items():  # buffers: the student's, copied
        if name not in parameters:
            assert torch.equal(teacher[name], value), name

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(whole / "step_000002.pth", resumed)
    train(loop_config(semi_infos, resumed, *steps), resume="auto", log=lambda line: None)
    again = load_checkpoint(resumed / "step_000003.pth")
    for field in ("model", "ema"):
        state = again[field] if field == "model" else again[field]["module"]
        reference = final[field] if field == "model" else teacher
        for name, value in reference.items():
            assert torch.equal(state[name], value), (field, name)


def _teacher_worker(rank: int, port: int, infos: str, out_dir: str) -> None:
    """One rank of a two-process teacher-student run; it saves its teacher."""
    set_torchrun_environment(rank, 2, port)
    torch.set_num_threads(1)
    config = loop_config(
        Path(infos), Path(out_dir) / "run", "train.max_steps=2", "data.batch_size=1"
    )
    trainer = Trainer(config, log=lambda line: None)
    trainer.fit()
    torch.save(trainer.ema.state_dict(), Path(out_dir) / f"teacher{rank}.pt")
    cleanup()


def test_every_rank_holds_the_same_teacher(semi_infos, tmp_path):
    # BatchNorm trains (frozen_bn=False): each rank's student has statistics of its own batch.
    run_processes(
        _teacher_worker, (free_port(), str(semi_infos), str(tmp_path)), 2, 240, "two ranks"
    )
    teachers = [torch.load(tmp_path / f"teacher{r}.pt")["module"] for r in (0, 1)]
    assert any("running_mean" in name for name in teachers[0])
    for name, value in teachers[0].items():
        assert torch.equal(value, teachers[1][name]), name


def test_ema_buffers_can_be_averaged():
    student = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    ema = ModelEMA(student, EmaMomentum(warm=0), buffers="average")
    student(torch.tensor([[1.0], [3.0]]))  # running mean 0.9 * 0 + 0.1 * mean = 0.1 * w + b
    running = student[1].running_mean.item()
    ema.update(student, step=1)  # momentum 0.5
    assert ema.module[1].running_mean.item() == pytest.approx(0.5 * running)
    assert ema.module[1].num_batches_tracked.item() == 1  # counters are copied


def test_teacher_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="train: ema and teacher.enabled are exclusive"):
        load_experiment(DEMO, ["train.ema=True", "train.teacher.enabled=True"])
    with pytest.raises(ConfigError, match="train.teacher.opacity_threshold"):
        load_experiment(DEMO, ["train.teacher.opacity_threshold=1.5"])
    with pytest.raises(ConfigError, match="train.teacher.voxel_region"):
        load_experiment(DEMO, ["train.teacher.voxel_region='visible'"])
    with pytest.raises(ConfigError, match=r"train.teacher.start_step \(10\) >= train.max_steps"):
        load_experiment(
            DEMO,
            ["train.teacher.enabled=True", "train.teacher.start_step=10", "train.max_steps=10"],
        )
    with pytest.raises(ConfigError, match="set ray_depth_on_unlabeled=True"):
        load_experiment(DEMO, ["train.teacher.voxel_region='measured'"])


@pytest.mark.parametrize(
    "name, reference, batch_size, ratio, fraction, teacher, depth_aware",
    [
        ("labeled_only", DEMO, 2, 0.0, 0.75, False, True),
        ("teacher", DEMO, 4, 1.0, 0.75, True, True),
        ("teacher_no_depth", DEMO, 4, 1.0, 0.75, True, False),
        ("teacher_lidar", DEMO, 4, 1.0, 0.75, True, True),
        ("all_labeled", DEMO, 2, 0.0, 0.0, False, True),
        ("2d_labeled_only", ONLY_2D, 2, 0.0, 0.75, False, True),
        ("2d_teacher", ONLY_2D, 4, 1.0, 0.75, True, True),
        ("2d_all_labeled", ONLY_2D, 2, 0.0, 0.0, False, True),
    ],
)
def test_semi_configs_are_the_demo_but_for_the_unlabeled_frames(
    name, reference, batch_size, ratio, fraction, teacher, depth_aware
):
    # The semi runs read their own dataroot (camera sweeps) and train for their own budget;
    # the 2D-only rows are configs/synthetic_2d.py in the same way.
    semi_root = "data/synthetic_semi/infos/"
    demo = to_dict(
        load_experiment(
            reference,
            [
                f"data.train_infos='{semi_root}renderlss_infos_train.pkl'",
                f"data.val_infos='{semi_root}renderlss_infos_val.pkl'",
                f"model.loss.class_counts='{semi_root}class_counts.json'",
                f"model.loss.occ3d_class_counts='{semi_root}voxel_class_counts.json'",
                # The semi runs keep the regular lift they were measured with
                # (docs/teacher_student.md); the demo has lifted by PDF samples since.
                "model.depth.sampling='bins'",
                "model.depth.pdf_samples=32",
                # ... and every projected LiDAR point, as synthetic_2d.py had then.
                "data.targets.lidar_hidden_radius=0",
            ],
        )
    )
    config = load_experiment(REPO / "configs" / f"synthetic_semi_{name}.py")
    semi = to_dict(config)
    for section in ("model", "render", "eval"):
        assert semi[section] == demo[section], section
    budget = ("max_steps", "checkpoint_interval", "eval_interval", "image_interval")
    for section, own in (
        ("data", ("unlabeled", "batch_size")),
        ("train", ("work_dir", "teacher", *budget)),
    ):
        assert {k: v for k, v in semi[section].items() if k not in own} == {
            k: v for k, v in demo[section].items() if k not in own
        }, section
    unlabeled = config.data.unlabeled
    assert (config.data.batch_size, unlabeled.ratio, unlabeled.keyframe_fraction) == (
        batch_size,
        ratio,
        fraction,
    )
    # Every run takes the same labeled samples per step.
    assert unlabeled.labeled_per_batch(config.data.batch_size) == 2
    assert (config.train.teacher.enabled, config.train.teacher.depth_aware) == (
        teacher,
        depth_aware,
    )


def test_lidar_config_is_the_teacher_config_with_its_two_options():
    # docs/teacher_student.md measured (b+) as (b) with these cfg-options.
    options = [
        "train.teacher.pseudo_voxel_weight=0.0",
        "train.teacher.lifting_depth_on_unlabeled=True",
        "train.work_dir='work_dirs/synthetic_semi_teacher_lidar'",
    ]
    measured = load_experiment(REPO / "configs" / "synthetic_semi_teacher.py", options)
    shipped = load_experiment(REPO / "configs" / "synthetic_semi_teacher_lidar.py")
    assert to_dict(shipped) == to_dict(measured)
