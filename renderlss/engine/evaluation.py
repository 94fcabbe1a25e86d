"""The evaluation loop: a trained network over an evaluation split, every metric at once.

Per sample (eval-mode ``OccDataset``: no augmentation, deterministic):

- **Occ3D mIoU**: ``predict_occupancy`` (density above ``EvalConfig.occupancy_threshold``,
  then the most likely non-free class) against the Occ3D labels, on the voxels of the
  configured visibility mask; 17-class and subset (15-class) means and per-class IoU.
- **RayIoU**: query rays from a single origin, the keyframe LiDAR position in the key-ego
  frame (the ``lidar2ego`` translation). SparseOcc casts from the LiDAR positions of up to 8
  keyframes of the scene; one origin is cheaper and needs no scene bookkeeping, but its
  numbers are not comparable with published RayIoU.
- **Depth against LiDAR**: one ray through every LiDAR point of the keyframe that projects
  into a camera (original image coordinates), scored where the point lies inside the grid;
  the same rays marched through the predicted occupancy give the depth at which it starts,
  scored against the LiDAR and against the rendered depth (do they agree?).
- **Lifting quality against LiDAR**: the depth net's expected depth per feature cell
  against the cell's nearest LiDAR depth, overall and near depth edges
  (:mod:`renderlss.eval.lifting_quality`).
- **Depth against the oracle** (synthetic data): whole images rendered every
  ``image_stride`` pixels against the exact depth of the same pixels.
- **Baselines** (optional): trivial predictors scored with the same mIoU and RayIoU, and an
  images-blind depth prior (per camera and image-row band, the median training target
  depth) scored with the same depth metrics as the rendered depth.
- Every depth source also reports the median signed relative error (negative: biased near).

Processes of a ``torchrun`` group take the samples ``rank::world_size`` and sum their
accumulators with ``all_reduce`` at the end, so any number of processes reports the numbers
of a single one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from renderlss.data.collate import collate, to_device
from renderlss.data.dataset import OccDataset
from renderlss.data.render_targets import input_depth_image, make_target_sources
from renderlss.engine.experiment import ExperimentConfig
from renderlss.engine.full_image import (
    RenderedImage,
    StridedGrid,
    camera_grid,
    camera_rays,
    reachable,
    render_camera_images,
    render_sample_rays,
)
from renderlss.eval.baselines import AllFreeBaseline, ColumnMajorityBaseline, OccupancyBaseline
from renderlss.eval.config import EvalConfig
from renderlss.eval.depth_metrics import DepthMetrics, SignedErrorMedian
from renderlss.eval.depth_prior import RowMedianDepthPrior
from renderlss.eval.lifting_quality import expected_depth, lifting_targets
from renderlss.eval.metrics import (
    OccupancyIoU,
    OccupancyIoUResult,
    format_rows,
    miou_key,
    occ3d_eval_mask,
)
from renderlss.eval.occupancy_depth import first_occupied_depth
from renderlss.eval.ray_iou import RayIoU, RayIoUResult
from renderlss.geometry import transform_points
from renderlss.geometry.grid import VoxelGrid
from renderlss.labels.artifacts import shard_indices
from renderlss.models.occupancy_net import predict_occupancy
from renderlss.records.files import output_path
from renderlss.records.infos import info_pose
from renderlss.records.oracle import ground_truth_folder, load_ground_truth
from renderlss.targets.pixel_targets import PixelTargets
from renderlss.targets.sources import TargetSource
from renderlss.train.distributed import all_reduce_sum, is_main_process, rank, world_size

# --------------------------------------------------------------------------- inputs


def eval_dataset(
    config: ExperimentConfig, infos: str | Path | tuple[dict, list[dict]]
) -> OccDataset:
    """An eval-mode dataset of ``infos`` (a file, or ``(metadata, records)``). Ray targets
    are switched off: the runner projects the LiDAR itself, without the training-time
    weighted ray sampling.

    Occ3D labels are loaded whenever every record names a label file and the label grid
    nests the model grid, whatever the losses use (``data.load_occ`` is about training);
    the first sample's file is read here, so that a label file of another shape than
    ``data.label_grid`` stops evaluation before the network runs.
    """
    targets = replace(config.data.targets, sources=[])
    dataset = OccDataset(
        infos, replace(config.data, targets=targets), train=False, occ_when_available=True
    )
    if dataset.loads_occ:
        dataset.occupancy_labels(dataset.infos[0])
    return dataset


def lidar_source(config: ExperimentConfig, dataroot: str | Path) -> TargetSource:
    """The keyframe-LiDAR target source with the config's target options (ego box, min
    depth), whatever sources training used. It keeps every projected point, hidden or not
    (``data.targets.lidar_hidden_radius`` filters training targets only), so that depth
    scores stay those of the raw projected LiDAR whatever the training set-up."""
    targets = replace(config.data.targets, sources=["lidar"], lidar_hidden_radius=0)
    return make_target_sources(targets, dataroot, config.data.classes)[0]


def predicted_volumes(
    model: nn.Module,
    dataset: OccDataset,
    eval_config: EvalConfig,
    device: torch.device,
    progress: bool = False,
    indices: Sequence[int] | None = None,
) -> Iterator[tuple[dict, dict[str, torch.Tensor]]]:
    """Batches of this process's shard (or of ``indices``) with the model's volumes.

    Yields:
        (batch on ``device``, ``model.volume(batch)``), under ``torch.no_grad()``.
    """
    if indices is None:
        indices = shard_indices(len(dataset), (rank(), world_size()))
    loader = DataLoader(
        dataset,
        batch_size=eval_config.batch_size,
        sampler=list(indices),
        num_workers=dataset.config.workers,
        collate_fn=collate,
    )
    model.eval()
    with torch.no_grad():
        for batch in tqdm(loader, desc="eval", unit="batch", disable=not progress):
            batch = to_device(batch, device)
            yield batch, model.volume(batch)


def sample_info(dataset: OccDataset, meta: dict) -> dict:
    """The info record of a batch element."""
    return dataset.infos[dataset.index_of_token[meta["token"]]]


def lidar_origin(info: dict, bev_aug: np.ndarray, where: str) -> np.ndarray:
    """[1, 3] the keyframe LiDAR position in the (augmented) key-ego frame."""
    position = info_pose(info, "lidar2ego", where)[:3, 3]
    return transform_points(bev_aug, position[None])


def training_labels(
    dataset: OccDataset, mask: str
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(semantics, mask)`` of every sample of ``dataset`` read from its Occ3D label file
    (no images are loaded); ``mask`` is "camera", "lidar" or "none"."""
    if not dataset.loads_occ:
        raise ValueError(f"no Occ3D labels to fit a baseline on: {dataset.occ_unavailable}")
    for index in range(len(dataset)):
        info = dataset.infos[index]
        labels = dataset.occupancy_labels(info)
        where = f"{dataset.source}: sample {info['token']}"
        yield labels["semantics"], occ3d_eval_mask(labels, mask, where)


def fit_baselines(
    train_set: OccDataset, config: ExperimentConfig, eval_config: EvalConfig
) -> dict[str, OccupancyBaseline]:
    """``all_free`` and ``column_majority`` (fitted on the labels of ``train_set``)."""
    grid, classes = config.data.grid, config.data.classes
    majority = ColumnMajorityBaseline(grid, classes)
    majority.fit(training_labels(train_set, eval_config.mask))
    return {"all_free": AllFreeBaseline(grid, classes.free_index), "column_majority": majority}


# --------------------------------------------------------------------------- results


@dataclass
class EvaluationResult:
    """Flat metrics (fractions; NaN where undefined) and printable tables."""

    metrics: dict[str, float]
    tables: dict[str, str]

    def report(self) -> str:
        """Every table under its title."""
        return "\n\n".join(f"== {title}\n{table}" for title, table in self.tables.items())


class VoxelScores:
    """mIoU and RayIoU of one predictor over the evaluated samples."""

    def __init__(self, config: ExperimentConfig, eval_config: EvalConfig, device) -> None:
        classes = config.data.classes
        self.occupancy = OccupancyIoU(classes.occ_class_names, classes.ignore_index, device)
        self.rays = RayIoU(classes.occ_class_names, config.data.grid, eval_config.ray_iou, device)
        self.exclude = eval_config.subset_exclude

    def update(self, pred, target, mask, origins, where: str) -> None:
        self.occupancy.update(pred, target, mask, where)
        self.rays.update(pred, target, origins, where)

    def all_reduce(self) -> None:
        self.occupancy.all_reduce()
        self.rays.all_reduce()

    def compute(self) -> tuple[OccupancyIoUResult, RayIoUResult]:
        return self.occupancy.compute(self.exclude), self.rays.compute()


# --------------------------------------------------------------------------- the loop


class DepthScore:
    """The depth metrics and the median signed error of one predictor against one source."""

    def __init__(self, eval_config: EvalConfig, device) -> None:
        depth_range = (eval_config.min_depth, eval_config.max_depth)
        self.metrics = DepthMetrics(*depth_range, device=device)
        self.signed = SignedErrorMedian(
            min_depth=depth_range[0], max_depth=depth_range[1], device=device
        )

    def update(self, pred: torch.Tensor, target: torch.Tensor, where: str) -> None:
        """[1, M] predicted and target depth of one image."""
        self.metrics.update(pred, target, where=where)
        self.signed.update(pred, target)

    def report(self) -> tuple[dict[str, float], dict[str, float], str]:
        """All-reduce, then (pooled metrics with ``median_signed`` and ``num_valid``,
        per-image metrics, table)."""
        self.metrics.all_reduce()
        self.signed.all_reduce()
        result = self.metrics.compute()
        pooled = dict(result.pooled, median_signed=self.signed.compute())
        pooled["num_valid"] = float(result.num_valid)
        return pooled, result.per_image, result.table()


@dataclass
class _DepthScorers:
    """Per depth source: the rendered depth's score and, with a prior, the prior's; with
    LiDAR, the lifted depth's score overall and near depth edges."""

    lidar: DepthScore | None
    oracle: DepthScore | None
    prior: RowMedianDepthPrior | None
    prior_lidar: DepthScore | None
    prior_oracle: DepthScore | None
    lifting: DepthScore | None
    lifting_edge: DepthScore | None
    # Along the LiDAR rays: the depth at which the predicted occupancy starts, against the
    # LiDAR ("occupancy") and against the rendered depth of the same rays ("agreement").
    occupancy: DepthScore | None
    agreement: DepthScore | None


def _depth_scorers(
    eval_config: EvalConfig, dataroot: str, device, prior: RowMedianDepthPrior | None
) -> _DepthScorers:
    lidar = eval_config.lidar_depth
    oracle = eval_config.oracle and (
        ground_truth_folder(dataroot, eval_config.ground_truth_dir) is not None
    )

    def make(on: bool) -> DepthScore | None:
        return DepthScore(eval_config, device) if on else None

    return _DepthScorers(
        lidar=make(lidar),
        oracle=make(oracle),
        prior=prior,
        prior_lidar=make(lidar and prior is not None),
        prior_oracle=make(oracle and prior is not None),
        lifting=make(lidar),
        lifting_edge=make(lidar),
        occupancy=make(lidar),
        agreement=make(lidar),
    )


def fit_depth_prior(
    train_set: OccDataset, config: ExperimentConfig, eval_config: EvalConfig
) -> RowMedianDepthPrior:
    """The images-blind depth prior from the LiDAR targets of up to
    ``eval_config.depth_prior_samples`` training keyframes (evenly spaced), those whose
    surface lies inside the grid: the targets that training draws and evaluation scores."""
    prior = RowMedianDepthPrior(eval_config.depth_prior_bands)
    source = lidar_source(config, train_set.dataroot)
    count = min(len(train_set), eval_config.depth_prior_samples)
    cameras = list(config.data.cameras)
    for index in np.linspace(0, len(train_set) - 1, count).round().astype(int):
        info = train_set.infos[int(index)]
        for cam, targets in source(info, cameras).items():
            cam_info = info["cams"][cam]
            rays = camera_rays(targets.uv, cam_info, info, np.eye(4))
            keep = reachable(rays, targets.depth, config.data.grid)
            prior.add(cam, int(cam_info["height"]), targets.uv[keep, 1], targets.depth[keep])
    return prior.finish()


def score_prior(
    scorers: _DepthScorers, which: str, cam: str, cam_info: dict, uv: np.ndarray, target, where: str
) -> None:
    """Score the depth prior at image coordinates ``uv`` [M, 2] against ``target`` [M]."""
    score = getattr(scorers, f"prior_{which}")
    if score is None:
        return
    pred = scorers.prior.predict(cam, int(cam_info["height"]), uv[:, 1])
    score.update(torch.from_numpy(pred)[None], torch.as_tensor(target)[None], where)


def score_lidar_depth(
    scorers: _DepthScorers,
    model: nn.Module,
    predictions: dict[str, torch.Tensor],
    index: int,
    info: dict,
    bev_aug: np.ndarray,
    targets: dict[str, PixelTargets],
    cameras: list[str],
    grid: VoxelGrid,
    occupied: torch.Tensor,
) -> None:
    """Render one ray per LiDAR target (``targets`` of every camera) and march it through
    the predicted occupancy ``occupied`` [X, Y, Z] bool; one metric row per camera."""
    where = f"sample {info['token']}"
    parts, depths = [], []
    for cam in cameras:
        has_depth = targets[cam].select(targets[cam].depth > 0)
        rays = camera_rays(has_depth.uv, info["cams"][cam], info, bev_aug)
        keep = reachable(rays, has_depth.depth, grid)
        parts.append({name: value[torch.from_numpy(keep)] for name, value in rays.items()})
        depths.append(torch.from_numpy(has_depth.depth[keep]))
        score_prior(
            scorers, "lidar", cam, info["cams"][cam], has_depth.uv[keep], depths[-1],
            f"{where} {cam}",
        )  # fmt: skip
    counts = [len(d) for d in depths]
    if sum(counts) == 0:
        for _ in cameras:
            for score in (scorers.lidar, scorers.occupancy, scorers.agreement):
                score.update(torch.zeros(1, 0), torch.zeros(1, 0), where=where)
        return
    rays = {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
    rendered = render_sample_rays(model, predictions, index, rays).depth[0]
    device = rendered.device
    batched = {name: value[None].to(device) for name, value in rays.items()}
    first = first_occupied_depth(occupied, batched, grid).to(rendered.dtype)
    for cam, pred, start, target in zip(
        cameras, rendered.split(counts), first.split(counts), depths
    ):
        at = f"{where} {cam}"
        scorers.lidar.update(pred[None], target[None], where=at)
        scorers.occupancy.update(start[None], target[None], where=at)
        scorers.agreement.update(start[None], pred[None], where=at)


def score_lifting_depth(
    scorers: _DepthScorers,
    depth_logits: torch.Tensor,
    img_aug: torch.Tensor,
    info: dict,
    targets: dict[str, PixelTargets],
    config: ExperimentConfig,
    eval_config: EvalConfig,
) -> None:
    """Score the expected depth of one sample's cells against its LiDAR ``targets``,
    overall and near depth edges; one metric row per camera.

    Args:
        depth_logits: [N, D, h, w] of the sample's N cameras.
        img_aug: [N, 3, 3] original -> input image maps of the cameras.
    """
    cameras = list(config.data.cameras)
    lidar_depth = np.stack(
        [
            input_depth_image(targets[cam], aug, config.data.input_size)
            for cam, aug in zip(cameras, img_aug.double().cpu().numpy())
        ]
    )
    target, near_edge = lifting_targets(
        torch.from_numpy(lidar_depth).to(depth_logits.device),
        config.model.depth.bins,
        config.model.neck.out_stride,
        tuple(depth_logits.shape[-2:]),
        eval_config.lifting_edge_threshold,
        eval_config.lifting_edge_radius,
    )
    pred = expected_depth(depth_logits, config.model.depth.bins)
    edge_target = torch.where(near_edge, target, torch.zeros_like(target))
    for n, cam in enumerate(cameras):
        where = f"sample {info['token']} {cam}"
        scorers.lifting.update(pred[n].reshape(1, -1), target[n].reshape(1, -1), where)
        scorers.lifting_edge.update(pred[n].reshape(1, -1), edge_target[n].reshape(1, -1), where)


@dataclass(frozen=True)
class GroundTruthPixels:
    """One camera's rendered pixels next to its ground-truth maps (flattened, [M])."""

    camera: str
    rendered: RenderedImage
    depth: np.ndarray  # camera z; 0 where unknown or the surface lies outside the grid
    semantics: np.ndarray | None  # the ground truth's classes where the file has them
    uv: np.ndarray  # [M, 2] pixel centres


def ground_truth_pixels(
    model: nn.Module,
    predictions: dict[str, torch.Tensor],
    index: int,
    info: dict,
    bev_aug: np.ndarray,
    cameras: list[str],
    truth_dir: Path,
    stride: int,
    grid: VoxelGrid,
) -> Iterator[GroundTruthPixels]:
    """Render every camera of a sample at ``stride`` and load the ground truth of
    ``truth_dir`` (the oracle's exact depth, or ``eval.ground_truth_dir``) at the same
    pixels, keeping the depth of those whose surface lies inside the grid."""
    images = render_camera_images(model, predictions, index, info, cameras, bev_aug, stride)
    for cam, rendered in zip(cameras, images):
        cam_info = info["cams"][cam]
        strided: StridedGrid = camera_grid(cam_info, stride)
        depth, semantics = load_ground_truth(
            output_path(truth_dir, cam, cam_info["data_path"]),
            f"sample {info['token']}",
            (strided.height, strided.width),
        )
        target = strided.subsample(depth).ravel()
        uv = strided.pixel_centres()
        rays = camera_rays(uv, cam_info, info, bev_aug)
        classes = None if semantics is None else strided.subsample(semantics).ravel()
        target = np.where(reachable(rays, target, grid), target, 0.0)
        yield GroundTruthPixels(cam, rendered, target, classes, uv)


def score_oracle_depth(
    scorers: _DepthScorers, info: dict, cameras: Iterable[GroundTruthPixels]
) -> None:
    """Score the rendered depth of every camera of a sample (``ground_truth_pixels``)
    against its ground truth; one row per camera."""
    for pixels in cameras:
        where = f"sample {info['token']} {pixels.camera}"
        target = torch.from_numpy(pixels.depth)[None]
        scorers.oracle.update(pixels.rendered.depth.reshape(1, -1), target, where)
        cam_info = info["cams"][pixels.camera]
        score_prior(scorers, "oracle", pixels.camera, cam_info, pixels.uv, pixels.depth, where)


def evaluate(
    model: nn.Module,
    dataset: OccDataset,
    config: ExperimentConfig,
    eval_config: EvalConfig,
    *,
    device: torch.device | str = "cpu",
    baselines: Mapping[str, OccupancyBaseline] | None = None,
    depth_prior: RowMedianDepthPrior | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate ``model`` on this process's shard of ``dataset`` and merge over processes.

    Args:
        model: an ``OccupancyNet`` (anything with its ``volume`` and ``render``), on ``device``.
        dataset: an eval-mode dataset (``eval_dataset``); Occ3D scores need its labels
            (``dataset.loads_occ``), and without them the tables say why they are missing.
        baselines: name -> predictor, scored like the model (``fit_baselines``).
        depth_prior: images-blind depth predictor scored like the rendered depth
            (``fit_depth_prior``), reported as ``baseline/depth_prior/depth/...``.
        progress: show a progress bar (on the main process only).
    Returns:
        metrics: ``mIoU_<K>_classes``, ``mIoU_<subset>_classes``, ``geometry_IoU``,
        ``IoU/<class>``, ``RayIoU``, ``RayIoU@<tau>``, ``RayIoU/<class>``,
        ``depth/{lidar,oracle}/<metric>`` (pooled, with ``median_signed``),
        ``depth/{lifting,lifting_edge}/<metric>`` (the depth net's expected depth per cell,
        for models that return ``depth_logits``)
        and ``depth_per_image/...``,
        ``baseline/<name>/...``, ``num_samples``; tables: per-class and summary tables.
    """
    device = torch.device(device)
    data = config.data
    cameras = list(data.cameras)
    threshold, free_index = eval_config.density_threshold, data.classes.free_index
    model_scores = VoxelScores(config, eval_config, device) if dataset.loads_occ else None
    baseline_scores = {name: VoxelScores(config, eval_config, device) for name in (baselines or {})}
    if baseline_scores and not dataset.loads_occ:
        raise ValueError(f"baselines need Occ3D labels: {dataset.occ_unavailable}")
    depth = _depth_scorers(eval_config, dataset.dataroot, device, depth_prior)
    source = lidar_source(config, dataset.dataroot) if depth.lidar is not None else None
    truth_dir = ground_truth_folder(dataset.dataroot, eval_config.ground_truth_dir)
    samples = 0
    show = progress and is_main_process()
    for batch, predictions in predicted_volumes(model, dataset, eval_config, device, show):
        labels = predict_occupancy(
            predictions["occupancy_density"], predictions["logits"], threshold, free_index
        )
        for b, meta in enumerate(batch["meta"]):
            info = sample_info(dataset, meta)
            where = f"{dataset.source}: sample {meta['token']}"
            bev_aug = np.asarray(meta["bev_aug"], dtype=np.float64)
            if model_scores is not None:
                target = batch["voxel_semantics"][b]
                fields = {name: batch[name][b] for name in ("mask_camera", "mask_lidar")}
                mask = occ3d_eval_mask(fields, eval_config.mask, where)
                origins = lidar_origin(info, bev_aug, where)
                model_scores.update(labels[b], target, mask, origins, where)
                for name, baseline in (baselines or {}).items():
                    pred = baseline.predict().to(device)
                    baseline_scores[name].update(pred, target, mask, origins, f"{where} ({name})")
            if depth.lidar is not None:
                lidar_targets = source(info, cameras)
                score_lidar_depth(
                    depth,
                    model,
                    predictions,
                    b,
                    info,
                    bev_aug,
                    lidar_targets,
                    cameras,
                    data.grid,
                    labels[b] != free_index,
                )
            if depth.lidar is not None and "depth_logits" in predictions:
                images = slice(b * len(cameras), (b + 1) * len(cameras))
                score_lifting_depth(
                    depth,
                    predictions["depth_logits"][images],
                    batch["img_aug"][b],
                    info,
                    lidar_targets,
                    config,
                    eval_config,
                )
            if depth.oracle is not None:
                pixels = ground_truth_pixels(
                    model, predictions, b, info, bev_aug, cameras, truth_dir,
                    eval_config.image_stride, data.grid,
                )  # fmt: skip
                score_oracle_depth(depth, info, pixels)
            samples += 1
    result = _merge_and_report(samples, model_scores, baseline_scores, depth, device)
    if model_scores is None:
        result.tables["Occ3D voxel IoU and RayIoU"] = f"not scored: {dataset.occ_unavailable}"
    return result


def _merge_and_report(
    samples: int,
    model_scores: VoxelScores | None,
    baseline_scores: dict[str, VoxelScores],
    depth: _DepthScorers,
    device: torch.device,
) -> EvaluationResult:
    """All-reduce every accumulator, then flatten the results into metrics and tables."""
    total = int(all_reduce_sum(torch.tensor(samples, dtype=torch.int64, device=device)))
    metrics: dict[str, float] = {"num_samples": float(total)}
    tables: dict[str, str] = {}
    comparison: dict[str, dict[str, float]] = {}
    predictors = {} if model_scores is None else {"model": model_scores}
    for name, scores in {**predictors, **baseline_scores}.items():
        scores.all_reduce()
        occupancy, rays = scores.compute()
        flat = {**occupancy.as_dict(), **rays.as_dict()}
        comparison[name] = flat
        if name == "model":
            metrics.update(flat)
            tables["Occ3D voxel IoU"] = occupancy.table()
            tables["RayIoU (one origin: the keyframe LiDAR)"] = rays.table()
        else:
            metrics.update({f"baseline/{name}/{key}": value for key, value in flat.items()})
    depth_rows: dict[str, dict[str, float]] = {}
    for source in ("lidar", "oracle"):
        for prefix, score in (
            ("", getattr(depth, source)),
            ("baseline/depth_prior/", getattr(depth, f"prior_{source}")),
        ):
            if score is None:
                continue
            pooled, per_image, table = score.report()
            metrics.update({f"{prefix}depth/{source}/{k}": v for k, v in pooled.items()})
            metrics.update(
                {f"{prefix}depth_per_image/{source}/{k}": v for k, v in per_image.items()}
            )
            name = "images-blind prior" if prefix else "rendered"
            tables[f"{name} depth vs {source}"] = table
            depth_rows[f"{name} vs {source}"] = pooled
    for source, title in (
        ("lifting", "lifted depth (expected, per feature cell) vs lidar"),
        ("lifting_edge", "lifted depth (expected, per feature cell) vs lidar near depth edges"),
        ("occupancy", "depth of the first predicted-occupied voxel vs lidar"),
        ("agreement", "depth of the first predicted-occupied voxel vs rendered depth"),
    ):
        score = getattr(depth, source)
        if score is None:
            continue
        pooled, per_image, table = score.report()
        if score.metrics.compute().num_images == 0:
            continue  # a model without a depth net (no depth_logits) lifts nothing
        tables[title] = table
        metrics.update({f"depth/{source}/{k}": v for k, v in pooled.items()})
        metrics.update({f"depth_per_image/{source}/{k}": v for k, v in per_image.items()})
    if depth.prior is not None and depth_rows:
        tables["depth: model vs images-blind prior (percent)"] = format_rows(
            depth_rows, ["abs_rel", "delta1", "median_signed"]
        )
    if baseline_scores and model_scores is not None:
        classes = model_scores.occupancy.class_names
        subset = len(classes) - len(model_scores.exclude)
        columns = [miou_key(len(classes)), miou_key(subset)]
        tables["model vs baselines"] = format_rows(comparison, columns + ["geometry_IoU", "RayIoU"])
    return EvaluationResult(metrics, tables)


def sweep_thresholds(
    model: nn.Module,
    dataset: OccDataset,
    config: ExperimentConfig,
    eval_config: EvalConfig,
    thresholds: Sequence[float],
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> list[OccupancyIoUResult]:
    """Occ3D mIoU for every density threshold, from one pass of the network over the
    shard of ``dataset`` (merged over processes), in the order of ``thresholds``."""
    if not dataset.loads_occ:
        raise ValueError(f"a threshold sweep needs Occ3D labels: {dataset.occ_unavailable}")
    device = torch.device(device)
    classes = config.data.classes
    metrics = [
        OccupancyIoU(classes.occ_class_names, classes.ignore_index, device) for _ in thresholds
    ]
    show = progress and is_main_process()
    for batch, predictions in predicted_volumes(model, dataset, eval_config, device, show):
        for b, meta in enumerate(batch["meta"]):
            where = f"{dataset.source}: sample {meta['token']}"
            fields = {name: batch[name][b] for name in ("mask_camera", "mask_lidar")}
            mask = occ3d_eval_mask(fields, eval_config.mask, where)
            density = predictions["occupancy_density"][b : b + 1]
            # Density is >= 0, so a threshold of -1 gives every voxel its occupied class; each
            # threshold then only decides which voxels are free.
            classes_everywhere = predict_occupancy(
                density, predictions["logits"][b : b + 1], -1.0, classes.free_index
            )[0]
            for threshold, metric in zip(thresholds, metrics):
                labels = torch.where(
                    density[0, 0] > threshold, classes_everywhere, classes.free_index
                )
                metric.update(labels, batch["voxel_semantics"][b], mask, where)
    results = []
    for metric in metrics:
        metric.all_reduce()
        results.append(metric.compute(eval_config.subset_exclude))
    return results
