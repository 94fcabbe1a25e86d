"""RayIoU (SparseOcc): semantic occupancy scored along query rays instead of per voxel.

Query rays start at given origins (LiDAR positions in the sample's ego frame) and go in a
fixed set of directions shaped like a spinning LiDAR. Each ray is cast through the
ground-truth and the predicted volume (occupied = any label but free) with an exact 3D DDA
voxel traversal; the first occupied voxel gives the ray's class and distance. Rays whose
ground-truth ray hits nothing are not scored. Over the scored rays, per class ``c`` and
threshold ``tau``:

- ``N_gt(c)``: rays whose ground-truth hit is of class ``c``;
- ``N_pred(c)``: rays whose predicted hit is of class ``c`` (a ray with no predicted hit has
  no class);
- ``TP(c, tau)``: rays with both hits of class ``c`` and ``|d_pred - d_gt| < tau``;
- ``IoU(c, tau) = TP / (N_gt + N_pred - TP)``: a ray of the right class at the wrong
  distance counts as both a false positive and a false negative.

RayIoU@tau is the mean over the semantic classes (free excluded, NaN for a class that no
scored ray saw, left out of the mean) and RayIoU the mean over the thresholds. See
``docs/metrics.md`` for how this relates to SparseOcc's reference code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from renderlss.eval.metrics import (
    ArrayLike,
    SumAccumulator,
    as_tensor,
    check_labels,
    format_class_table,
    nanmean,
)
from renderlss.geometry import transform_points
from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.render import ray_box_intersection


@dataclass
class RayIoUConfig:
    """Query rays and distance thresholds. The defaults are SparseOcc's protocol."""

    thresholds: tuple[float, ...] = (1.0, 2.0, 4.0)  # metres along the ray
    azimuth_step_deg: float = 1.0
    # Downward pitches -(pi/2 - atan(k)) for k = 1..num_steep_pitches, then equal steps up
    # to max_pitch (radians; the upper edge of the nuScenes LiDAR's field of view).
    num_steep_pitches: int = 10
    max_pitch: float = 0.21
    origin_margin: float = 1.0  # origins closer than this to the grid's x/y border are dropped
    max_origins: int = 8
    # Distance of a hit: where the ray enters the first occupied voxel, or where it leaves it
    # (SparseOcc's reference code reports the exit).
    hit_distance: Literal["entry", "exit"] = "exit"

    def validate(self, where: str) -> None:
        if not self.thresholds or any(t <= 0 for t in self.thresholds):
            raise ValueError(f"{where}.thresholds must be positive, got {self.thresholds}")
        if not 0 < self.azimuth_step_deg <= 360:
            raise ValueError(f"{where}.azimuth_step_deg must be in (0, 360]")
        if self.num_steep_pitches < 2:
            raise ValueError(f"{where}.num_steep_pitches must be at least 2")
        if not -math.pi / 2 < self.max_pitch < math.pi / 2:
            raise ValueError(f"{where}.max_pitch must be within (-pi/2, pi/2) radians")
        if self.origin_margin < 0 or self.max_origins < 1:
            raise ValueError(f"{where}: origin_margin must be >= 0 and max_origins >= 1")


def lidar_like_pitches(num_steep_pitches: int, max_pitch: float) -> np.ndarray:
    """Elevation angles of the query rays, radians, ascending.

    ``-(pi/2 - atan(k))`` for ``k = 1..num_steep_pitches`` (dense near the horizon, sparse
    towards the ground), then steps equal to the last gap until a pitch reaches
    ``max_pitch`` (that last one included).

    Returns:
        [P] float64.
    """
    pitches = [-(math.pi / 2 - math.atan(k)) for k in range(1, num_steep_pitches + 1)]
    gap = pitches[-1] - pitches[-2]
    while pitches[-1] < max_pitch:
        pitches.append(pitches[-1] + gap)
    return np.asarray(pitches)


def lidar_like_directions(config: RayIoUConfig) -> Tensor:
    """Unit query directions in the ego frame (x forward, y left, z up), every pitch of
    ``lidar_like_pitches`` times azimuths ``0, step, ..`` degrees from +x towards +y.

    Returns:
        [P * A, 3] float64, pitch-major.
    """
    pitch = lidar_like_pitches(config.num_steep_pitches, config.max_pitch)[:, None]
    azimuth = np.deg2rad(np.arange(0.0, 360.0, config.azimuth_step_deg))[None, :]
    directions = np.stack(
        np.broadcast_arrays(
            np.cos(pitch) * np.cos(azimuth), np.cos(pitch) * np.sin(azimuth), np.sin(pitch)
        ),
        axis=-1,
    )
    return torch.from_numpy(directions.reshape(-1, 3))


def sensor_origins_in_frame(
    frame_from_global: np.ndarray, global_from_sensor: np.ndarray
) -> np.ndarray:
    """Positions of sensors (e.g. the LiDAR at every keyframe of a scene) in one frame.

    Args:
        frame_from_global: [4, 4] ``T_frame_from_global`` (e.g. the sample's ego frame).
        global_from_sensor: [T, 4, 4] ``T_global_from_sensor`` per frame.
    Returns:
        [T, 3] float64.
    """
    return transform_points(frame_from_global, np.asarray(global_from_sensor)[:, :3, 3])


def select_query_origins(
    origins: ArrayLike, grid: VoxelGrid, margin: float, max_origins: int
) -> Tensor:
    """SparseOcc's choice of origins: those at least ``margin`` inside the grid's x/y
    border, thinned to ``max_origins`` picked at ``round(linspace(0, n - 1, max_origins))``.

    Args:
        origins: [T, 3] candidate origins in time order.
    Returns:
        [T', 3] float64, T' <= max_origins (possibly 0).
    """
    origins = as_tensor(origins).double().reshape(-1, 3)
    lower = torch.as_tensor(grid.lower[:2]) + margin
    upper = torch.as_tensor(grid.upper[:2]) - margin
    xy = origins[:, :2]
    origins = origins[((xy > lower) & (xy < upper)).all(dim=-1)]
    if len(origins) > max_origins:
        pick = np.round(np.linspace(0, len(origins) - 1, max_origins)).astype(np.int64)
        origins = origins[torch.from_numpy(pick)]
    return origins


class RayHits(NamedTuple):
    """First occupied voxel along each ray (distances in metres along the unit ray)."""

    voxel: Tensor  # [R, 3] int64 voxel index, -1 where the ray hits nothing
    entry: Tensor  # [R] float64 distance where the ray enters that voxel (inf: no hit)
    exit: Tensor  # [R] float64 distance where it leaves it (inf: no hit)


def first_occupied_voxel(
    occupied: Tensor, origins: Tensor, directions: Tensor, grid: VoxelGrid
) -> RayHits:
    """Exact voxel traversal (3D DDA, Amanatides & Woo) of many rays at once.

    Each ray visits the voxels it crosses in order, starting where it enters the grid (its
    origin when inside); the first occupied one is the hit. Rays finished (hit or out of the
    grid) are dropped from the working set, so the cost follows the rays still marching.

    Args:
        occupied: [X, Y, Z] bool, indexed like ``grid``.
        origins: [R, 3] in the grid's frame (metres).
        directions: [R, 3], need not be unit (distances are metres along the unit direction).
        grid: the voxel grid of ``occupied``.
    Returns:
        RayHits with [R]-shaped fields.
    """
    if tuple(occupied.shape) != grid.shape:
        raise ValueError(f"occupancy shape {tuple(occupied.shape)} != grid shape {grid.shape}")
    device = occupied.device
    f64 = dict(dtype=torch.float64, device=device)
    lower, upper = torch.tensor(grid.lower, **f64), torch.tensor(grid.upper, **f64)
    size = torch.tensor(grid.size, **f64)
    shape = torch.tensor(grid.shape, device=device)
    strides = torch.tensor([grid.shape[1] * grid.shape[2], grid.shape[2], 1], device=device)
    origins = origins.to(**f64).reshape(-1, 3)
    directions = directions.to(**f64).reshape(-1, 3)
    norm = directions.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("ray directions must be non-zero")
    directions = directions / norm

    num_rays = len(origins)
    voxel = torch.full((num_rays, 3), -1, dtype=torch.int64, device=device)
    entry = torch.full((num_rays,), math.inf, **f64)
    exit_ = torch.full((num_rays,), math.inf, **f64)

    t_enter, t_leave = ray_box_intersection(origins, directions, lower, upper)
    t_enter = t_enter.clamp(min=0.0)  # an origin inside the grid starts there
    ray = torch.nonzero(t_enter < t_leave).squeeze(1)
    o, d, t = origins[ray], directions[ray], t_enter[ray]
    start = o + t[:, None] * d
    # Clamp: a ray entering through a face sits on it, where floor may round outward.
    index = (
        torch.floor((start - lower) / size).long().clamp(min=torch.zeros_like(shape), max=shape - 1)
    )
    step = torch.where(d >= 0, 1, -1)
    moving = d != 0
    safe = torch.where(moving, d, torch.ones_like(d))
    next_boundary = lower + (index + (step > 0).long()) * size
    t_next = torch.where(moving, (next_boundary - o) / safe, math.inf)  # next crossing per axis
    t_delta = torch.where(moving, size / safe.abs(), math.inf)  # distance between crossings
    occupied_flat = occupied.reshape(-1).bool()

    # The marching state is packed into two tensors so that dropping finished rays costs two
    # gathers: floats [t, t_next xyz, t_delta xyz], integers [ray, index xyz, step xyz].
    march_f = torch.cat([t[:, None], t_next, t_delta], dim=1)
    march_i = torch.cat([ray[:, None], index, step], dim=1)
    while len(march_i):
        t, t_next, t_delta = march_f[:, 0], march_f[:, 1:4], march_f[:, 4:7]
        ray, index, step = march_i[:, 0], march_i[:, 1:4], march_i[:, 4:7]
        hit = occupied_flat[(index * strides).sum(dim=-1)]
        if bool(hit.any()):
            voxel[ray[hit]] = index[hit]
            entry[ray[hit]] = t[hit]
            exit_[ray[hit]] = t_next[hit].amin(dim=-1)
        # Step into the neighbour across the nearest voxel face (views update the state).
        axis = t_next.argmin(dim=-1, keepdim=True)
        t.copy_(t_next.gather(1, axis).squeeze(1))
        t_next.scatter_add_(1, axis, t_delta.gather(1, axis))
        index.scatter_add_(1, axis, step.gather(1, axis))
        keep = ~hit & ((index >= 0) & (index < shape)).all(dim=-1)
        if not bool(keep.all()):
            rows = torch.nonzero(keep).squeeze(1)
            march_f, march_i = march_f.index_select(0, rows), march_i.index_select(0, rows)
    return RayHits(voxel, entry, exit_)


def cast_query_rays(
    semantics: Tensor,
    origins: Tensor,
    directions: Tensor,
    grid: VoxelGrid,
    free_index: int,
    hit_distance: Literal["entry", "exit"] = "exit",
) -> tuple[Tensor, Tensor]:
    """Class and distance of the first occupied voxel along every (origin, direction) ray.

    Args:
        semantics: [X, Y, Z] labels; ``free_index`` is empty space, anything else occupied.
        origins: [T, 3] ray origins; directions: [R, 3].
        hit_distance: report where the ray enters or leaves the hit voxel.
    Returns:
        labels: [T * R] int64, ``free_index`` where the ray hits nothing (origin-major).
        distance: [T * R] float64 metres, inf where the ray hits nothing.
    """
    num_origins, num_directions = len(origins), len(directions)
    ray_origins = origins.to(directions).repeat_interleave(num_directions, dim=0)
    ray_directions = directions.repeat(num_origins, 1)
    hits = first_occupied_voxel(semantics != free_index, ray_origins, ray_directions, grid)
    found = hits.voxel[:, 0] >= 0
    labels = torch.full((len(found),), free_index, dtype=torch.int64, device=semantics.device)
    x, y, z = hits.voxel[found].unbind(dim=-1)
    labels[found] = semantics[x, y, z].long()
    return labels, hits.entry if hit_distance == "entry" else hits.exit


@dataclass(frozen=True)
class RayIoUResult:
    """RayIoU over an evaluation set; fractions in [0, 1], NaN for a class no ray saw."""

    class_names: tuple[str, ...]
    thresholds: tuple[float, ...]
    iou: np.ndarray  # [len(thresholds), K]
    miou_per_threshold: np.ndarray  # [len(thresholds)]
    ray_iou: float  # mean over thresholds
    num_rays: int  # rays scored (ground-truth hit)

    def _column(self, tau: float) -> str:
        return f"RayIoU@{tau:g}"

    def as_dict(self) -> dict[str, float]:
        """Flat scalars for logging: RayIoU, RayIoU@tau, per-class mean over thresholds."""
        out = {"RayIoU": self.ray_iou}
        out.update(
            {self._column(t): float(m) for t, m in zip(self.thresholds, self.miou_per_threshold)}
        )
        per_class = [nanmean(self.iou[:, c]) for c in range(len(self.class_names))]
        out.update({f"RayIoU/{name}": v for name, v in zip(self.class_names, per_class)})
        return out

    def table(self) -> str:
        """Aligned plain-text table: per-class IoU at each threshold, the means, RayIoU."""
        columns = {self._column(t): self.iou[j] for j, t in enumerate(self.thresholds)}
        body = format_class_table(self.class_names, columns, {"mean": self.miou_per_threshold})
        return f"{body}\nRayIoU (mean over thresholds): {self.ray_iou * 100:.2f}"


class RayIoU(SumAccumulator):
    """RayIoU accumulated as int64 ray counts ``[2 + len(thresholds), K]``: ground-truth
    rays per class, predicted rays per class, true positives per threshold and class.

    Args:
        class_names: the K semantic classes in label order; label ``K`` is free.
        grid: the voxel grid of the volumes.
        config: query rays and thresholds.
        device: where ray casting runs and the counts live.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        grid: VoxelGrid,
        config: RayIoUConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.class_names = tuple(class_names)
        self.free_index = len(self.class_names)
        self.grid = grid
        self.config = config or RayIoUConfig()
        self.config.validate("RayIoUConfig")
        self.directions = lidar_like_directions(self.config).to(device)
        rows = 2 + len(self.config.thresholds)
        super().__init__(torch.zeros(rows, len(self.class_names), dtype=torch.int64, device=device))

    def update(
        self, pred: ArrayLike, target: ArrayLike, origins: ArrayLike, where: str = "sample"
    ) -> None:
        """Cast the query rays through one sample's predicted and ground-truth volumes.

        Args:
            pred, target: [X, Y, Z] labels in ``[0, K]`` (K = free).
            origins: [T, 3] candidate origins in the sample's ego frame, in time order (e.g.
                ``sensor_origins_in_frame`` of the LiDAR at every keyframe of the scene, or
                just this keyframe's LiDAR); filtered by ``select_query_origins``.
            where: names the sample in error messages.
        """
        device = self._sums.device
        pred, target = as_tensor(pred, device), as_tensor(target, device)
        for what, volume in (("prediction", pred), ("ground truth", target)):
            if tuple(volume.shape) != self.grid.shape:
                raise ValueError(
                    f"{where}: {what} shape {tuple(volume.shape)} != grid {self.grid.shape}"
                )
            check_labels(volume.long(), self.free_index + 1, f"{where}: {what}")
        cfg = self.config
        origins = select_query_origins(origins, self.grid, cfg.origin_margin, cfg.max_origins)
        origins = origins.to(device)
        pred_hits = cast_query_rays(
            pred, origins, self.directions, self.grid, self.free_index, cfg.hit_distance
        )
        gt_hits = cast_query_rays(
            target, origins, self.directions, self.grid, self.free_index, cfg.hit_distance
        )
        self.update_hits(*pred_hits, *gt_hits)

    def update_hits(
        self, pred_labels: Tensor, pred_distance: Tensor, gt_labels: Tensor, gt_distance: Tensor
    ) -> None:
        """Count rays already cast.

        Args:
            pred_labels, gt_labels: [R] int hit class, ``K`` (free) where nothing was hit.
            pred_distance, gt_distance: [R] metres to the hit (any value where no hit).
        """
        num_classes = len(self.class_names)
        check_labels(pred_labels.long(), num_classes + 1, "predicted ray labels")
        check_labels(gt_labels.long(), num_classes + 1, "ground-truth ray labels")
        scored = gt_labels != self.free_index
        gt, pred = gt_labels[scored].long(), pred_labels[scored].long()
        error = (pred_distance[scored].double() - gt_distance[scored].double()).abs()
        same = pred == gt
        counts = [torch.bincount(gt, minlength=num_classes + 1)[:num_classes]]
        counts.append(torch.bincount(pred, minlength=num_classes + 1)[:num_classes])
        for tau in self.config.thresholds:
            counts.append(
                torch.bincount(gt[same & (error < tau)], minlength=num_classes + 1)[:num_classes]
            )
        self._sums += torch.stack(counts).to(self._sums.device)

    def compute(self) -> RayIoUResult:
        counts = self._sums.double().cpu()
        gt, pred, tp = counts[0], counts[1], counts[2:]
        iou = (tp / (gt + pred - tp)).numpy()  # 0 / 0 -> NaN: a class no scored ray saw
        per_threshold = np.array([nanmean(row) for row in iou])
        return RayIoUResult(
            class_names=self.class_names,
            thresholds=tuple(self.config.thresholds),
            iou=iou,
            miou_per_threshold=per_threshold,
            ray_iou=nanmean(per_threshold),
            num_rays=int(self._sums[0].sum()),
        )
