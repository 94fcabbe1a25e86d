"""Pseudo labels of the teacher-student loop, and their losses, as pure functions.

The teacher's rendering along the student's rays gives per ray a class (the argmax of the
softmax of its rendered semantics), that class's probability, an opacity and a depth. A ray
is kept when the probability and the opacity reach their thresholds and the class is not
free (rays end on surfaces; no ray target is ever free). Depth targets are the teacher's
rendered depth on kept rays; depth-aware, a ray's measured LiDAR depth replaces it and the
ray is kept for depth whatever the teacher's confidence. Voxel pseudo labels are the
teacher's voxel argmax (free included) where its probability reaches a threshold, inside the
voxels the cameras' frustums reach, or only the part of them in front of and at each feature
cell's lifted surface (the occlusion-aware region, like Occ3D's camera mask). Only unlabeled
samples carry pseudo losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.models.losses import occupancy_ce_loss, semantic_ce_loss, silog_loss
from renderlss.ops.splat import voxel_index


@dataclass
class PseudoRayLabels:
    """Per-ray pseudo labels of a batch (every sample; losses select the unlabeled ones)."""

    semantics: torch.Tensor  # [B, R] int64 teacher class
    probability: torch.Tensor  # [B, R] its probability
    keep: torch.Tensor  # [B, R] bool: passes the thresholds (semantic and depth target)
    depth: torch.Tensor  # [B, R] depth target: measured where depth-aware and > 0, else teacher
    depth_keep: torch.Tensor  # [B, R] bool: rays with a depth target (keep, or measured)


def ray_pseudo_labels(
    semantics: torch.Tensor,
    opacity: torch.Tensor,
    depth: torch.Tensor,
    measured_depth: torch.Tensor,
    confidence_threshold: float,
    opacity_threshold: float,
    free_index: int,
    depth_aware: bool,
) -> PseudoRayLabels:
    """Pseudo labels from the teacher's rendering along the rays.

    Args:
        semantics: [B, R, K] rendered semantic logits of the teacher.
        opacity: [B, R] its rendered opacity; depth: [B, R] its rendered camera-z depth.
        measured_depth: [B, R] the rays' LiDAR depth targets, <= 0 where none.
        confidence_threshold, opacity_threshold: a ray is kept when its class probability
            and its opacity are >= these.
        free_index: the free class, never a ray's pseudo class.
        depth_aware: measured depth replaces the teacher's depth target and keeps its ray.
    Returns:
        the labels, detached from the graph.
    """
    probability, cls = semantics.detach().float().softmax(dim=-1).max(dim=-1)
    keep = (
        (probability >= confidence_threshold)
        & (opacity.detach() >= opacity_threshold)
        & (cls != free_index)
    )
    target = depth.detach().float()
    depth_keep = keep
    if depth_aware:
        measured = measured_depth > 0
        target = torch.where(measured, measured_depth.float(), target)
        depth_keep = keep | measured
    return PseudoRayLabels(cls, probability, keep, target, depth_keep)


def pseudo_ray_losses(
    student_semantics: torch.Tensor,
    student_depth: torch.Tensor,
    labels: PseudoRayLabels,
    unlabeled: torch.Tensor,
    class_weights: torch.Tensor | None,
    silog_lambda: float,
    silog_min_depth: float,
) -> dict[str, torch.Tensor]:
    """Pseudo semantic CE and pseudo depth SILog of the student's rendering on the kept rays
    of unlabeled samples, before their loss weights.

    Args:
        student_semantics: [B, R, K] the student's rendered semantics.
        student_depth: [B, R] its rendered depth.
        labels: from :func:`ray_pseudo_labels` on the same rays.
        unlabeled: [B] bool.
        class_weights: [K] or None, as the supervised semantic term's.
    Returns:
        ``pseudo_semantic`` and ``pseudo_depth`` scalars (graph-connected 0 when no ray).
    """
    rows = unlabeled.to(labels.keep.device)[:, None]
    semantic_weight = (labels.keep & rows).flatten()
    depth_weight = (labels.depth_keep & rows).flatten()
    return dict(
        pseudo_semantic=semantic_ce_loss(
            student_semantics.flatten(0, 1),
            labels.semantics.flatten(),
            class_weights,
            semantic_weight,
            ignore_index=-1,
        ),
        pseudo_depth=silog_loss(
            student_depth.flatten(),
            labels.depth.flatten(),
            depth_weight,
            silog_lambda,
            silog_min_depth,
        ),
    )


def bins_up_to_surface(distribution: torch.Tensor) -> torch.Tensor:
    """The depth bins of each feature cell in front of and at its lifted surface.

    The surface of a cell is its median bin: the first where the cumulative lifted mass
    reaches 0.5 (a one-hot's own bin, so a measured depth's bin where depth-aware). Bins
    behind it are occluded for that cell.

    Args:
        distribution: [M, D, h, w] the lift's depth distribution (sums to 1 over D).
    Returns:
        [M, D, h, w] bool: True where the mass strictly before the bin is below 0.5.
    """
    mass = distribution.detach().float()
    return mass.cumsum(dim=1) - mass < 0.5


def frustum_visibility(
    points: torch.Tensor, grid: VoxelGrid, up_to_surface: torch.Tensor | None = None
) -> torch.Tensor:
    """Voxels that hold a lifted frustum point of some camera: the region the cameras see.

    Args:
        points: [B, N, D, h, w, 3] frustum points in the grid's frame.
        up_to_surface: [B, N, D, h, w] bool, the points that count (from
            :func:`bins_up_to_surface`), or None for every point of the frustums.
    Returns:
        [B, X, Y, Z] bool.
    """
    index, valid = voxel_index(points, grid)
    if up_to_surface is not None:
        valid = valid & up_to_surface.view(valid.shape)
    visible = torch.zeros(
        points.shape[0] * math.prod(grid.shape), dtype=torch.bool, device=points.device
    )
    visible[index[valid]] = True
    return visible.view(points.shape[0], *grid.shape)


def voxel_pseudo_labels(
    logits: torch.Tensor,
    visible: torch.Tensor,
    confidence_threshold: float,
    exclude_class: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's voxel classes and where they are confident enough to learn from.

    Args:
        logits: [B, K, X, Y, Z] teacher voxel logits (free class included).
        visible: [B, X, Y, Z] bool, from :func:`frustum_visibility` or the measured voxels.
        confidence_threshold: kept where the class probability is >= this.
        exclude_class: a class never kept: the free class where the ``visible`` voxels are
            measured surfaces, on which a free teacher class is a disagreement.
    Returns:
        labels [B, X, Y, Z] int64, keep [B, X, Y, Z] bool.
    """
    probability, labels = logits.detach().float().softmax(dim=1).max(dim=1)
    keep = visible & (probability >= confidence_threshold)
    if exclude_class is not None:
        keep = keep & (labels != exclude_class)
    return labels, keep


def pseudo_voxel_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    keep: torch.Tensor,
    unlabeled: torch.Tensor,
    class_weights: torch.Tensor | None,
) -> torch.Tensor:
    """3D CE of the student's voxel logits [B, K, X, Y, Z] against the teacher's labels
    [B, X, Y, Z] on the kept voxels of unlabeled samples ([B] bool), with the supervised 3D
    term's ``class_weights`` [K] (or none), before its loss weight."""
    mask = keep & unlabeled.to(keep.device).view(-1, 1, 1, 1)
    return occupancy_ce_loss(student_logits, labels, mask, class_weights, ignore_index=-1)
