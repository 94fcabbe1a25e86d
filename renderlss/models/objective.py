"""The training objective: every loss term of the model, weighted as the config says."""

from __future__ import annotations

import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.models.config import LossConfig, ModelConfig
from renderlss.models.depth_edges import (
    depth_edge_map,
    edge_weights,
    ray_edge_weights,
    ray_feature_cells,
)
from renderlss.models.losses import (
    distortion_loss,
    emptiness_loss,
    lss_depth_loss,
    occupancy_bce_loss,
    occupancy_ce_loss,
    opacity_entropy_loss,
    ray_termination_loss,
    semantic_ce_loss,
    silog_loss,
    target_distance,
    termination_kernel_width,
)
from renderlss.ops.render import RenderOutput


def loss_terms(
    predictions: dict[str, torch.Tensor],
    rendered: RenderOutput,
    batch: dict,
    model_config: ModelConfig,
    class_weights: dict[str, torch.Tensor | None],
    ignore_index: int,
    grid: VoxelGrid,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms (terms with weight 0 are not computed).

    Args:
        predictions: ``density``, ``logits``, ``depth_logits`` of :class:`OccupancyNet`, and
            ``queries`` when a ray-query term is on.
        rendered: rendering along ``batch["targets"]`` rays ([B, R] per-ray outputs).
        batch: collated samples with ``targets`` (``depth``, ``semantics``, ``confidence``
            [B, R], ``image_depth`` [B, N, H, W]) and, for the 3D term, ``voxel_semantics``
            and ``mask_camera`` [B, X, Y, Z]; edge-aware rendered depth also reads the
            cameras (``cam2ego``, ``intrinsic``, ``img_aug``).
        model_config: the ``model`` section (loss weights, depth bins, feature stride).
        class_weights: [K] class weights (or None for uniform) of the ``semantic`` and the
            ``occ3d`` term.
        ignore_index: class value of targets without a class.
        grid: the volume's voxel grid; its smallest edge L turns density into occupancy
            probability ``1 - exp(-sigma L)`` for the ray-query and 3D density terms.
    Returns:
        {term name: weighted scalar}; their sum is the training loss.
    """
    config = model_config.loss
    targets = batch["targets"]
    confidence = targets["confidence"].flatten()
    focal_gamma = config.focal_gamma if config.semantic_loss == "focal" else 0.0
    edge_rendered = config.depth_edge_rendered and config.depth_weight
    cell_weights = None
    if config.depth_edge_weight != 1.0 and (config.lss_depth_weight or edge_rendered):
        cell_weights = depth_cell_weights(
            targets["image_depth"].flatten(0, 1),
            config,
            model_config.neck.out_stride,
            tuple(predictions["depth_logits"].shape[-2:]),
        )
    terms = {}
    if config.depth_weight:
        depth_weight = confidence
        if edge_rendered and cell_weights is not None:
            cells = ray_feature_cells(
                targets["origins"],
                targets["dirs"],
                batch["cam2ego"],
                batch["intrinsic"],
                batch["img_aug"],
                model_config.neck.out_stride,
                tuple(cell_weights.shape[-2:]),
            )
            depth_weight = confidence * ray_edge_weights(cell_weights, cells).flatten()
        terms["depth"] = config.depth_weight * silog_loss(
            rendered.depth.flatten(),
            targets["depth"].flatten(),
            depth_weight,
            config.silog_lambda,
            config.silog_min_depth,
        )
    if config.semantic_weight:
        terms["semantic"] = config.semantic_weight * semantic_ce_loss(
            rendered.semantics.flatten(0, 1),
            targets["semantics"].flatten().long(),
            class_weights.get("semantic"),
            confidence,
            ignore_index,
            focal_gamma,
        )
    if config.distortion_weight:
        terms["distortion"] = config.distortion_weight * distortion_loss(
            rendered.weights.flatten(0, 1),
            rendered.t_starts.flatten(0, 1),
            rendered.t_ends.flatten(0, 1),
        )
    if config.entropy_weight:
        terms["entropy"] = config.entropy_weight * opacity_entropy_loss(rendered.opacity.flatten())
    if config.lss_depth_weight:
        terms["lss_depth"] = config.lss_depth_weight * lss_depth_loss(
            predictions["depth_logits"],
            targets["image_depth"].flatten(0, 1),
            model_config.depth.bins,
            model_config.neck.out_stride,
            config.lss_depth_mode,
            cell_weights,
        )
    length = float(min(grid.voxel_size))
    if config.termination_weight:
        t_target = target_distance(targets["depth"].flatten(), targets["z_per_t"].flatten())
        width = termination_kernel_width(
            t_target, confidence, config.termination_width, config.termination_relative_width
        )
        terms["termination"] = config.termination_weight * ray_termination_loss(
            rendered.weights.flatten(0, 1),
            rendered.t_starts.flatten(0, 1),
            rendered.t_ends.flatten(0, 1),
            t_target,
            width,
            confidence,
        )
    if (config.query_weight or config.query_semantic_weight) and config.query_sampling == "voxel":
        terms.update(
            voxel_query_terms(
                predictions, config, class_weights.get("semantic"), ignore_index, length
            )
        )
    elif config.query_weight or config.query_semantic_weight:
        terms.update(
            ray_query_terms(
                predictions["queries"],
                targets,
                config,
                class_weights.get("semantic"),
                ignore_index,
                length,
            )
        )
    if config.occ3d_density_weight:
        mask = batch["mask_camera"] if config.occ3d_use_camera_mask else None
        labels = batch["voxel_semantics"]
        known = labels != ignore_index
        weight = known if mask is None else known & mask.bool()
        terms["occ3d_density"] = config.occ3d_density_weight * occupancy_bce_loss(
            predictions["occupancy_density"][:, 0].flatten(),
            (labels != model_config.head.num_classes - 1).flatten(),
            length,
            weight.flatten(),
        )
    if config.emptiness_weight:
        terms["emptiness"] = config.emptiness_weight * emptiness_loss(
            predictions["occupancy_density"], length
        )
    if config.occ3d_weight:
        mask = batch["mask_camera"] if config.occ3d_use_camera_mask else None
        terms["occ3d"] = config.occ3d_weight * occupancy_ce_loss(
            predictions["logits"],
            batch["voxel_semantics"],
            mask,
            class_weights.get("occ3d"),
            ignore_index,
            focal_gamma,
        )
    return terms


def depth_cell_weights(
    image_depth: torch.Tensor, config: LossConfig, stride: int, size: tuple[int, int]
) -> torch.Tensor:
    """Edge-aware depth weights [M, h, w] of the feature cells from the target depth images
    [M, H, W]: ``depth_edge_weight`` on depth edges, 1 elsewhere."""
    edges = depth_edge_map(
        image_depth, stride, config.depth_edge_radius, config.depth_edge_threshold, size
    )
    return edge_weights(edges, config.depth_edge_weight)


def ray_query_terms(
    queries: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    config: LossConfig,
    class_weights: torch.Tensor | None,
    ignore_index: int,
    length: float,
) -> dict[str, torch.Tensor]:
    """The weighted ray-query terms from :meth:`OccupancyNet.query` samples.

    ``query``: occupancy BCE of the free and occupied points, the two sets weighted equally
    (each the mean over its own points) so that the many free points do not drown the few
    occupied ones. ``query_semantic``: CE of the occupied points' logits against the ray's
    class and of the free points' logits against the free class (the last class).
    Every point carries its ray's confidence.
    """
    confidence = targets["confidence"].float()
    terms = {}
    if config.query_weight:
        parts = [
            occupancy_bce_loss(
                queries[f"{part}_density"].flatten(),
                torch.full_like(queries[f"{part}_valid"], part == "occupied").flatten(),
                length,
                (queries[f"{part}_valid"] * confidence.unsqueeze(-1)).flatten(),
            )
            for part in ("free", "occupied")
        ]
        terms["query"] = config.query_weight * 0.5 * (parts[0] + parts[1])
    if config.query_semantic_weight:
        occupied_logits = queries["occupied_logits"]
        free_logits = queries["free_logits"]
        num_classes = occupied_logits.shape[-1]
        ray_class = targets["semantics"].long().unsqueeze(-1)
        parts = []
        for logits, label, valid in (
            (occupied_logits, ray_class.expand(occupied_logits.shape[:-1]), "occupied_valid"),
            (free_logits, torch.full(free_logits.shape[:-1], num_classes - 1), "free_valid"),
        ):
            weight = queries[valid] * confidence.unsqueeze(-1)
            parts.append(
                semantic_ce_loss(
                    logits.flatten(0, -2),
                    label.to(logits.device).flatten(),
                    class_weights,
                    weight.flatten(),
                    ignore_index,
                )
            )
        terms["query_semantic"] = config.query_semantic_weight * 0.5 * (parts[0] + parts[1])
    return terms


def voxel_query_terms(
    predictions: dict[str, torch.Tensor],
    config: LossConfig,
    class_weights: torch.Tensor | None,
    ignore_index: int,
    length: float,
) -> dict[str, torch.Tensor]:
    """The weighted ray-query terms on the voxels the query points label
    (``query_sampling="voxel"``): occupancy BCE of the voxels' occupancy density, free and
    occupied voxels weighted equally, and CE of the logits (ray class / free class)."""
    state = predictions["queries"]["voxel_state"]
    free, occupied = state == 1, state == 2
    terms = {}
    if config.query_weight:
        density = predictions["occupancy_density"][:, 0]
        parts = [
            occupancy_bce_loss(density.flatten(), occupied.flatten(), length, mask.flatten())
            for mask in (free, occupied)
        ]
        terms["query"] = config.query_weight * 0.5 * (parts[0] + parts[1])
    if config.query_semantic_weight:
        logits = predictions["logits"]
        free_class = logits.shape[1] - 1
        labels = torch.where(occupied, predictions["queries"]["voxel_class"], free_class)
        flat_logits = logits.movedim(1, -1).reshape(-1, logits.shape[1])
        parts = [
            semantic_ce_loss(
                flat_logits, labels.flatten(), class_weights, mask.flatten(), ignore_index
            )
            for mask in (free, occupied)
        ]
        terms["query_semantic"] = config.query_semantic_weight * 0.5 * (parts[0] + parts[1])
    return terms
