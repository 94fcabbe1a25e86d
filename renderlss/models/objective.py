"""The training objective: every loss term of the model, weighted as the config says."""

from __future__ import annotations

import torch

from renderlss.models.config import ModelConfig
from renderlss.models.losses import (
    distortion_loss,
    lss_depth_loss,
    occupancy_ce_loss,
    opacity_entropy_loss,
    semantic_ce_loss,
    silog_loss,
)
from renderlss.ops.render import RenderOutput


def loss_terms(
    predictions: dict[str, torch.Tensor],
    rendered: RenderOutput,
    batch: dict,
    model_config: ModelConfig,
    class_weights: dict[str, torch.Tensor | None],
    ignore_index: int,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms (terms with weight 0 are not computed).

    Args:
        predictions: ``density``, ``logits``, ``depth_logits`` of :class:`OccupancyNet`.
        rendered: rendering along ``batch["targets"]`` rays ([B, R] per-ray outputs).
        batch: collated samples with ``targets`` (``depth``, ``semantics``, ``confidence``
            [B, R], ``image_depth`` [B, N, H, W]) and, for the 3D term, ``voxel_semantics``
            and ``mask_camera`` [B, X, Y, Z].
        model_config: the ``model`` section (loss weights, depth bins, feature stride).
        class_weights: [K] class weights (or None for uniform) of the ``semantic`` and the
            ``occ3d`` term.
    Returns:
        {term name: weighted scalar}; their sum is the training loss.
    """
    config = model_config.loss
    targets = batch["targets"]
    confidence = targets["confidence"].flatten()
    terms = {}
    if config.depth_weight:
        terms["depth"] = config.depth_weight * silog_loss(
            rendered.depth.flatten(),
            targets["depth"].flatten(),
            confidence,
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
        )
    if config.occ3d_weight:
        mask = batch["mask_camera"] if config.occ3d_use_camera_mask else None
        terms["occ3d"] = config.occ3d_weight * occupancy_ce_loss(
            predictions["logits"],
            batch["voxel_semantics"],
            mask,
            class_weights.get("occ3d"),
            ignore_index,
        )
    return terms
