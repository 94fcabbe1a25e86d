"""Splat (voxel pooling): sum frustum features into the full 3D volume of a voxel grid.

Every frustum point lands in the voxel ``floor((p - lower) / voxel_size)`` of a
``renderlss.geometry.grid.VoxelGrid`` (floor, not truncation); points outside the grid are
dropped. The result is the full volume [B, C, X, Y, Z], not collapsed to BEV, accumulated in
float32 whatever the input dtype (sums of hundreds of points lose too much in half precision),
and returned in ``torch.channels_last_3d`` memory format: pooling writes all C channels of a
voxel together, and 3D convolutions accept that layout, so no copy is made.

Two variants give the same volume:

- ``splat``: the frustum feature [B, N, D, h, w, C] (depth x context outer product) is given.
- ``splat_depth_context`` / ``splat_planned``: in the spirit of BEVPool-v2, the depth
  distribution [B, N, D, h, w] and the context [B, N, C, h, w] are given and the D x C frustum
  feature is never stored: kept points are sorted by voxel once (a ``SplatPlan``, reusable while
  the geometry is unchanged) and ``depth * context`` is formed ``chunk_size`` points at a time,
  in the forward pass and again in the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.compiled import splat_extension

# Points whose depth * context rows are formed at once: bounds the scratch memory of the
# memory-lean splat to chunk_size x C floats.
DEFAULT_CHUNK_SIZE = 1 << 17


def voxel_index(points: Tensor, grid: VoxelGrid) -> tuple[Tensor, Tensor]:
    """Flat voxel index of every point, by floor, including the batch.

    Args:
        points: [B, ..., 3] in the grid's frame.
        grid: the voxel grid.
    Returns:
        index: [B, ...] int64 into a flattened [B, X, Y, Z] volume (0 where not valid).
        valid: [B, ...] bool, the point lies inside the grid.
    """
    if points.shape[-1] != 3:
        raise ValueError(f"voxel_index: points must end in 3, got shape {tuple(points.shape)}")
    # float64 so the voxel a point falls in matches VoxelGrid.point_to_index bit for bit.
    lower = torch.as_tensor(grid.lower, dtype=torch.float64, device=points.device)
    size = torch.as_tensor(grid.size, dtype=torch.float64, device=points.device)
    dims = torch.as_tensor(grid.shape, dtype=torch.float64, device=points.device)
    cell = torch.floor((points.to(torch.float64) - lower) / size)  # [B, ..., 3]
    # Compared as floats so that NaN and infinite points are simply invalid.
    valid = ((cell >= 0) & (cell < dims)).all(dim=-1)
    cell = torch.where(valid.unsqueeze(-1), cell, torch.zeros_like(cell)).long()
    size_x, size_y, size_z = grid.shape
    batch = torch.arange(points.shape[0], device=points.device)
    batch = batch.view(-1, *([1] * (points.dim() - 2)))
    index = ((batch * size_x + cell[..., 0]) * size_y + cell[..., 1]) * size_z + cell[..., 2]
    return torch.where(valid, index, torch.zeros_like(index)), valid


def splat(features: Tensor, points: Tensor, grid: VoxelGrid) -> Tensor:
    """Sum-pool materialised frustum features into the voxel volume.

    Args:
        features: [B, N, D, h, w, C] frustum features.
        points: [B, N, D, h, w, 3] their positions in the grid's frame.
        grid: the voxel grid (X, Y, Z voxels).
    Returns:
        [B, C, X, Y, Z] float32 volume.
    """
    if points.shape != (*features.shape[:-1], 3):
        raise ValueError(
            f"splat: points {tuple(points.shape)} do not match features "
            f"{tuple(features.shape)} (expected [..., 3] over the same leading dims)"
        )
    batch, channels = features.shape[0], features.shape[-1]
    index, valid = voxel_index(points, grid)
    kept = features[valid].float()  # [M, C]
    volume = kept.new_zeros(batch * _num_voxels(grid), channels)
    volume = volume.index_add(0, index[valid], kept)
    return _to_channels_first(volume, batch, grid)


@dataclass(frozen=True, eq=False)
class SplatPlan:
    """Where the kept frustum points go, sorted by voxel; depends on geometry only."""

    point_index: Tensor  # [M] int64, flat index into [B, N, D, h, w]
    voxel_index: Tensor  # [M] int64, flat index into [B, X, Y, Z], non-decreasing
    context_index: Tensor  # [M] int64, flat index into [B, N, h, w] (the point's feature cell)
    frustum_shape: tuple[int, int, int, int, int]  # (B, N, D, h, w)
    grid: VoxelGrid


def plan_splat(points: Tensor, grid: VoxelGrid) -> SplatPlan:
    """Sort the frustum points that fall inside the grid by voxel.

    Args:
        points: [B, N, D, h, w, 3] frustum points in the grid's frame.
        grid: the voxel grid.
    Returns:
        The plan, reusable for any depth/context on the same geometry.
    """
    if points.dim() != 6 or points.shape[-1] != 3:
        raise ValueError(
            f"plan_splat: points must be [B, N, D, h, w, 3], got {tuple(points.shape)}"
        )
    frustum_shape = tuple(points.shape[:-1])
    _, _, depth_bins, rows, cols = frustum_shape
    with torch.no_grad():
        index, valid = voxel_index(points, grid)
        point_index = torch.nonzero(valid.reshape(-1)).squeeze(1)
        voxel = index.reshape(-1)[point_index]
        order = torch.argsort(voxel, stable=True)
        point_index, voxel = point_index[order], voxel[order]
        cells = rows * cols
        camera = point_index // (depth_bins * cells)
        context_index = camera * cells + point_index % cells
    return SplatPlan(point_index, voxel, context_index, frustum_shape, grid)


def splat_depth_context(
    depth: Tensor,
    context: Tensor,
    points: Tensor,
    grid: VoxelGrid,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    kernel: str = "torch",
) -> Tensor:
    """Sum-pool ``depth x context`` into the voxel volume without forming the frustum feature.

    Equal to ``splat(depth[..., None] * context_as_[B,N,1,h,w,C], points, grid)``.

    Args:
        depth: [B, N, D, h, w] depth distribution (e.g. softmax over D).
        context: [B, N, C, h, w] context features.
        points: [B, N, D, h, w, 3] frustum points in the grid's frame.
        grid: the voxel grid.
        chunk_size: points whose products are formed at once.
        kernel: ``"torch"`` or ``"auto"``, see :func:`splat_planned`.
    Returns:
        [B, C, X, Y, Z] float32 volume.
    """
    return splat_planned(depth, context, plan_splat(points, grid), chunk_size, kernel)


def splat_planned(
    depth: Tensor,
    context: Tensor,
    plan: SplatPlan,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    kernel: str = "torch",
) -> Tensor:
    """``splat_depth_context`` with the geometry already sorted into a ``SplatPlan``.

    Args:
        depth: [B, N, D, h, w]; context: [B, N, C, h, w]; plan: from ``plan_splat``.
        kernel: ``"torch"`` (this module's chunked segment sum) or ``"auto"`` (the compiled
            kernel of ``cuda/`` where ``renderlss.ops.compiled`` finds or builds one, else
            the torch one).
    Returns:
        [B, C, X, Y, Z] float32 volume.
    """
    batch, cameras, depth_bins, rows, cols = plan.frustum_shape
    if tuple(depth.shape) != plan.frustum_shape:
        raise ValueError(
            f"splat_planned: depth {tuple(depth.shape)} does not match the plan's frustum "
            f"{plan.frustum_shape}"
        )
    if context.dim() != 5 or (*context.shape[:2], *context.shape[3:]) != (
        batch,
        cameras,
        rows,
        cols,
    ):
        raise ValueError(
            f"splat_planned: context must be [B, N, C, h, w] = [{batch}, {cameras}, C, {rows}, "
            f"{cols}], got {tuple(context.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"splat_planned: chunk_size must be positive, got {chunk_size}")
    channels = context.shape[2]
    depth_flat = depth.float().reshape(-1)  # [B*N*D*h*w]
    context_rows = context.float().permute(0, 1, 3, 4, 2).reshape(-1, channels)  # [B*N*h*w, C]
    volume = _DepthContextSplat.apply(
        depth_flat,
        context_rows,
        plan.point_index,
        plan.voxel_index,
        plan.context_index,
        batch * _num_voxels(plan.grid),
        chunk_size,
        splat_extension(kernel, depth.device),
    )
    return _to_channels_first(volume, batch, plan.grid)


class _DepthContextSplat(torch.autograd.Function):
    """volume[v] = sum over points p in v of depth[p] * context[cell(p)], chunk by chunk, or
    by the compiled ``extension`` (``renderlss.ops.compiled``) when one is given."""

    @staticmethod
    def forward(
        ctx,
        depth_flat: Tensor,
        context_rows: Tensor,
        point_index: Tensor,
        voxel_index: Tensor,
        context_index: Tensor,
        num_voxels: int,
        chunk_size: int,
        extension=None,
    ) -> Tensor:
        ctx.save_for_backward(depth_flat, context_rows, point_index, voxel_index, context_index)
        ctx.chunk_size = chunk_size
        ctx.extension = extension
        if extension is not None:
            return extension.splat_forward(
                depth_flat, context_rows, point_index, voxel_index, context_index, num_voxels
            )
        volume = context_rows.new_zeros(num_voxels, context_rows.shape[1])
        for start in range(0, point_index.numel(), chunk_size):
            part = slice(start, start + chunk_size)
            weighted = (
                depth_flat[point_index[part]].unsqueeze(1) * context_rows[context_index[part]]
            )
            volume.index_add_(0, voxel_index[part], weighted)
        return volume

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_volume: Tensor):
        depth_flat, context_rows, point_index, voxel_index, context_index = ctx.saved_tensors
        need_depth, need_context = ctx.needs_input_grad[:2]
        if ctx.extension is not None:
            grad_depth, grad_context = ctx.extension.splat_backward(
                grad_volume,
                depth_flat,
                context_rows,
                point_index,
                voxel_index,
                context_index,
                need_depth,
                need_context,
            )
            # The kernel answers an empty tensor for a gradient not asked for.
            grad_depth = grad_depth if need_depth else None
            grad_context = grad_context if need_context else None
            return grad_depth, grad_context, None, None, None, None, None, None
        grad_depth = torch.zeros_like(depth_flat) if need_depth else None
        grad_context = torch.zeros_like(context_rows) if need_context else None
        for start in range(0, point_index.numel(), ctx.chunk_size):
            part = slice(start, start + ctx.chunk_size)
            grad_rows = grad_volume[voxel_index[part]]  # [m, C]
            points = point_index[part]
            cells = context_index[part]
            if need_depth:
                # Each frustum point appears once in the plan, so plain assignment suffices.
                grad_depth[points] = (grad_rows * context_rows[cells]).sum(dim=1)
            if need_context:
                grad_context.index_add_(0, cells, depth_flat[points].unsqueeze(1) * grad_rows)
        return grad_depth, grad_context, None, None, None, None, None, None


def _num_voxels(grid: VoxelGrid) -> int:
    size_x, size_y, size_z = grid.shape
    return size_x * size_y * size_z


def _to_channels_first(volume: Tensor, batch: int, grid: VoxelGrid) -> Tensor:
    """[B*X*Y*Z, C] -> [B, C, X, Y, Z] in channels_last_3d memory format, without a copy."""
    return volume.view(batch, *grid.shape, -1).permute(0, 4, 1, 2, 3)
