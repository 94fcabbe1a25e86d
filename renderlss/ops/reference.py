"""Naive reference implementations: benchmark baselines and test oracles.

- ``splat_cumsum_reference``: the classic LSS voxel pooling ("cumsum trick": sort points by
  voxel, cumulative sum, differences at voxel boundaries), with floor indices.
- ``render_dense_reference``: every ray sampled every ``step`` from t = 0 to a fixed far
  distance (default: the grid diagonal), no box clipping, no skipping, no termination.
- ``weights_reference``: transmittance and weights from cumulative products in plain torch,
  the oracle for nerfacc's weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.rays import Rays
from renderlss.ops.render import RenderOutput, sample_volume
from renderlss.ops.splat import voxel_index


def splat_cumsum_reference(features: Tensor, points: Tensor, grid: VoxelGrid) -> Tensor:
    """Classic LSS cumsum-trick voxel pooling.

    Args:
        features: [B, N, D, h, w, C]; points: [B, N, D, h, w, 3]; grid: the voxel grid.
    Returns:
        [B, C, X, Y, Z] float32 volume.
    """
    batch, channels = features.shape[0], features.shape[-1]
    index, valid = voxel_index(points, grid)
    kept = features[valid].float()  # [M, C]
    rank = index[valid]
    order = torch.argsort(rank)
    kept, rank = kept[order], rank[order]
    running = kept.cumsum(dim=0)
    last_of_voxel = torch.ones_like(rank, dtype=torch.bool)
    last_of_voxel[:-1] = rank[1:] != rank[:-1]
    running, rank = running[last_of_voxel], rank[last_of_voxel]
    sums = torch.cat([running[:1], running[1:] - running[:-1]])
    size_x, size_y, size_z = grid.shape
    volume = kept.new_zeros(batch * size_x * size_y * size_z, channels)
    volume = volume.index_put((rank,), sums)
    return volume.view(batch, size_x, size_y, size_z, channels).permute(0, 4, 1, 2, 3)


def weights_reference(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor) -> Tensor:
    """``w_i = T_i (1 - exp(-sigma_i delta_i))``, ``T_i = prod_{j<i} exp(-sigma_j delta_j)``.

    Args:
        t_starts, t_ends, sigmas: [R, S].
    Returns:
        [R, S] weights.
    """
    survive = torch.exp(-sigmas * (t_ends - t_starts))  # [R, S]
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(survive[:, :1]), survive[:, :-1]], dim=1), dim=1
    )
    return transmittance * (1.0 - survive)


def render_dense_reference(
    density: Tensor,
    logits: Tensor | None,
    rays: Rays,
    grid: VoxelGrid,
    step: float,
    far: float | None = None,
) -> RenderOutput:
    """Render with ``ceil(far / step)`` midpoint samples on every ray from t = 0.

    Density outside the grid box is zero, as in ``render_rays``. Matches ``render_rays`` in
    evaluation when every ray starts inside the box and ``far`` reaches past its exit.

    Args:
        density: [B, 1, X, Y, Z]; logits: [B, K, X, Y, Z] or None.
        rays: origins, directions [B, R, 3], z_per_t [B, R].
        grid: the voxel grid; step: sample spacing in metres.
        far: last distance sampled (default: the length of the grid's diagonal).
    Returns:
        RenderOutput, every ray with the same S samples.
    """
    if far is None:
        far = float(torch.linalg.norm(torch.as_tensor(grid.upper - grid.lower)))
    batch, num_rays, _ = rays.origins.shape
    count = math.ceil(far / step)
    t_starts = torch.arange(count, device=density.device, dtype=torch.float32) * step
    t_starts = t_starts.expand(batch * num_rays, count)
    t_ends = t_starts + step
    positions = t_starts + 0.5 * step
    points = rays.origins.unsqueeze(2) + positions.view(batch, num_rays, count, 1) * (
        rays.directions.unsqueeze(2)
    )  # [B, R, S, 3]
    lower = torch.as_tensor(grid.lower, dtype=torch.float32, device=density.device)
    upper = torch.as_tensor(grid.upper, dtype=torch.float32, device=density.device)
    inside = ((points >= lower) & (points <= upper)).all(dim=-1).view(batch * num_rays, count)
    flat_points = points.view(batch, num_rays * count, 3)
    sigmas = sample_volume(density, flat_points, grid).reshape(batch * num_rays, count) * inside
    weights = weights_reference(t_starts, t_ends, sigmas)
    semantics = None
    if logits is not None:
        sample_logits = sample_volume(logits, flat_points, grid).reshape(
            batch * num_rays, count, -1
        )
        semantics = (weights.unsqueeze(-1) * sample_logits).sum(dim=1).view(batch, num_rays, -1)
    depth = (weights * positions).sum(dim=1).view(batch, num_rays) * rays.z_per_t
    return RenderOutput(
        depth=depth,
        opacity=weights.sum(dim=1).view(batch, num_rays),
        semantics=semantics,
        weights=weights.view(batch, num_rays, count),
        t_starts=t_starts.reshape(batch, num_rays, count),
        t_ends=t_ends.reshape(batch, num_rays, count),
        num_samples=torch.tensor(batch * num_rays * count),
    )
