"""Ray-query supervision: the volume queried directly at 3D points along target rays.

A ray with a measured surface at distance ``t*`` says two things about the volume without
any compositing: the space it crossed before ``t*`` is free, and the space just behind
``t*`` is occupied by the surface's class. Points are drawn along each target ray in both
parts and the density (and class logits) interpolated there are supervised point by point:
every point gets a gradient of its own, also where the rendering weights are near zero
(behind a floater, or at the far end of a volume that has not been carved yet).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.render import ray_box_intersection, sample_volume


class QueryPoints(NamedTuple):
    """Distances along each ray of its free and occupied query points."""

    t_free: Tensor  # [..., F] metres along the ray
    free_valid: Tensor  # [..., F] bool: the ray has free space of its own there
    t_occupied: Tensor  # [..., O]
    occupied_valid: Tensor  # [..., O] bool


def stratified(
    lower: Tensor, upper: Tensor, count: int, jitter: bool, generator: torch.Generator | None
) -> Tensor:
    """``count`` stratified draws in ``[lower, upper]`` per row: one uniform draw in each of
    ``count`` equal sub-intervals, or their midpoints without ``jitter``. [...] -> [..., count]."""
    shape = (*lower.shape, count)
    if jitter:
        offset = torch.rand(shape, device=lower.device, generator=generator)
    else:
        offset = torch.full(shape, 0.5, device=lower.device)
    fraction = (torch.arange(count, device=lower.device) + offset) / count
    return lower.unsqueeze(-1) + fraction * (upper - lower).unsqueeze(-1)


def query_points(
    t_enter: Tensor,
    t_target: Tensor,
    num_free: int,
    num_occupied: int,
    free_margin: float,
    occupied_depth: float,
    jitter: bool,
    generator: torch.Generator | None = None,
) -> QueryPoints:
    """Free points in ``[t_enter, t* - free_margin]`` and occupied points in
    ``[t*, t* + occupied_depth]`` along each ray (stratified).

    Args:
        t_enter: [...] where the ray enters the volume (metres along the ray).
        t_target: [...] measured surface distance; ``<= 0`` marks a ray without depth.
        free_margin: metres kept clear in front of the surface (interpolation blurs it).
        occupied_depth: metres behind the surface counted as inside it.
        jitter: random stratified positions (training) instead of midpoints.
    Returns:
        QueryPoints with [..., F] and [..., O] distances and validity.
    """
    has_depth = t_target > 0
    free_end = t_target - free_margin
    t_free = stratified(t_enter, torch.maximum(free_end, t_enter), num_free, jitter, generator)
    free_valid = (has_depth & (free_end > t_enter)).unsqueeze(-1).expand_as(t_free)
    t_occupied = stratified(t_target, t_target + occupied_depth, num_occupied, jitter, generator)
    occupied_valid = has_depth.unsqueeze(-1).expand_as(t_occupied)
    return QueryPoints(t_free, free_valid, t_occupied, occupied_valid)


def ray_query_samples(
    density: Tensor,
    logits: Tensor | None,
    origins: Tensor,
    directions: Tensor,
    t: Tensor,
    grid: VoxelGrid,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Field values at ``origins + t * directions``.

    Args:
        density: [B, 1, X, Y, Z]; logits: [B, K, X, Y, Z] or None.
        origins, directions: [B, R, 3] (unit directions) in the grid's frame.
        t: [B, R, Q] distances along the rays.
    Returns:
        density [B, R, Q], logits [B, R, Q, K] (or None) and inside [B, R, Q] bool (the point
        lies in the grid box; values outside it are not meaningful).
    """
    b, r, q = t.shape
    points = origins.unsqueeze(2) + t.unsqueeze(-1) * directions.unsqueeze(2)  # [B, R, Q, 3]
    flat = points.reshape(b, r * q, 3)
    inside = inside_box(points, grid)
    sigma = sample_volume(density, flat, grid)[..., 0].reshape(b, r, q)
    values = None if logits is None else sample_volume(logits, flat, grid).reshape(b, r, q, -1)
    return sigma, values, inside


def inside_box(points: Tensor, grid: VoxelGrid) -> Tensor:
    """[...] bool: the points [..., 3] lie inside the grid box (half-open, like voxels)."""
    lower = torch.as_tensor(grid.lower, dtype=points.dtype, device=points.device)
    upper = torch.as_tensor(grid.upper, dtype=points.dtype, device=points.device)
    return ((points >= lower) & (points < upper)).all(dim=-1)


def entry_distance(origins: Tensor, directions: Tensor, grid: VoxelGrid, near: float) -> Tensor:
    """[...]: where each ray enters the grid box, no nearer than ``near`` (metres)."""
    lower = torch.as_tensor(grid.lower, dtype=torch.float32, device=origins.device)
    upper = torch.as_tensor(grid.upper, dtype=torch.float32, device=origins.device)
    t_enter, _ = ray_box_intersection(origins.float(), directions.float(), lower, upper)
    return t_enter.clamp(min=near)


def voxel_labels_from_queries(
    origins: Tensor,
    directions: Tensor,
    points: QueryPoints,
    ray_class: Tensor,
    grid: VoxelGrid,
) -> tuple[Tensor, Tensor]:
    """Occ3D-style voxel labels from the query points of a batch's rays.

    A voxel holding an occupied point (just behind a measured surface) is occupied with that
    ray's class; a voxel holding only free points is free. Occupied wins where rays disagree:
    Occ3D marks a voxel occupied as soon as it holds a surface point, whatever rays crossed it.

    Args:
        origins, directions: [B, R, 3] unit rays in the grid's frame.
        points: query distances ([B, R, F] free, [B, R, O] occupied) and their validity.
        ray_class: [B, R] int64 class of each ray's surface.
        grid: the volume's voxel grid.
    Returns:
        state [B, X, Y, Z] int64 (0 unknown, 1 free, 2 occupied) and cls [B, X, Y, Z] int64
        (the class of occupied voxels, undefined elsewhere).
    """
    batch = origins.shape[0]
    shape = grid.shape
    state = torch.zeros(
        batch * shape[0] * shape[1] * shape[2], dtype=torch.long, device=origins.device
    )
    cls = torch.zeros_like(state)
    for value, t, valid in (
        (1, points.t_free, points.free_valid),
        (2, points.t_occupied, points.occupied_valid),
    ):
        flat, inside = flat_voxel_index(origins, directions, t, grid)
        keep = valid & inside
        state[flat[keep]] = value
        if value == 2:
            cls[flat[keep]] = ray_class.unsqueeze(-1).expand_as(t)[keep]
    return state.view(batch, *shape), cls.view(batch, *shape)


def flat_voxel_index(
    origins: Tensor, directions: Tensor, t: Tensor, grid: VoxelGrid
) -> tuple[Tensor, Tensor]:
    """Index into a flattened [B, X, Y, Z] volume of the voxel holding each point
    ``origins + t * directions`` (by floor), and whether the point is inside the grid.

    Args:
        origins, directions: [B, R, 3]; t: [B, R, Q].
    Returns:
        flat [B, R, Q] int64 (clamped into range where outside) and inside [B, R, Q] bool.
    """
    points = origins.unsqueeze(2) + t.unsqueeze(-1) * directions.unsqueeze(2)
    lower = torch.as_tensor(grid.lower, dtype=points.dtype, device=points.device)
    size = torch.as_tensor(grid.size, dtype=points.dtype, device=points.device)
    dims = torch.as_tensor(grid.shape, device=points.device)
    index = torch.floor((points - lower) / size).long()
    inside = ((index >= 0) & (index < dims)).all(dim=-1)
    index = torch.minimum(index.clamp(min=0), dims - 1)
    batch = torch.arange(origins.shape[0], device=points.device).view(-1, 1, 1)
    flat = ((batch * dims[0] + index[..., 0]) * dims[1] + index[..., 1]) * dims[2] + index[..., 2]
    return flat, inside


def voxel_peak_density(density: Tensor) -> Tensor:
    """The largest density the renderer meets inside each voxel, taken over the centres of
    its 8 octants: the trilinear field at offsets of +-1/4 voxel from the centre (held
    constant past the grid faces, as the renderer does). A voxel whose surface lies off its
    centre (the ground in the lower half of a voxel layer) still reads as occupied.

    Args:
        density: [B, 1, X, Y, Z].
    Returns:
        [B, 1, X, Y, Z].
    """
    octants = F.interpolate(density, scale_factor=2, mode="trilinear", align_corners=False)
    return F.max_pool3d(octants, kernel_size=2, stride=2)
