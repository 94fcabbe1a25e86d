"""Packed, empty-space-skipping samples for ``render_rays`` (``RenderConfig.sampler="packed"``).

The intervals are the dense sampler's (``step`` long from the ray's box entry, the same
midpoints or jitter), but only some are sampled, decided without gradient:

1. **Empty space.** ``occupancy_bound`` max-pools the detached density over each voxel's
   3 x 3 x 3 neighbourhood. Trilinear interpolation at a point mixes only centres of that
   neighbourhood, so the bound of the voxel a sample falls in bounds the sample's density.
   A ray of length L in the box skips samples whose bound is at most
   ``skip_optical_depth / L``: the skipped optical depth ``sum_i sigma_i delta_i`` is at most
   ``skip_optical_depth`` per ray. Every kept weight is then its dense value times a factor
   in ``[1, exp(skip_optical_depth)]``, and opacity moves by at most
   ``1 - exp(-skip_optical_depth)``.
2. **Behind opaque surfaces.** With ``early_stop_eps > 0`` the density of the non-empty
   samples is evaluated once without gradient (density only for a ``VolumeField``); a sample
   whose transmittance (over the kept samples before it) is below ``early_stop_eps`` is
   dropped, so the weight left out is below ``early_stop_eps`` per ray. Unlike the dense
   sampler this is decided per sample, not per segment.

The field (with gradient) is then evaluated once on the kept samples, packed flat as [M]
with their ``ray_indices`` (nerfacc's layout): no padded sample is ever interpolated. The
compositing runs on a padded [r, S'] copy of the kept intervals and densities (S' the most
kept samples of a ray, far below the dense count), which is what ``RenderOutput`` carries
to the losses; logits are composited packed (``index_add`` by ray). On CUDA the weights use
nerfacc's packed path (``volume_weights(..., cuda_packed=True)``).

What changes against the dense sampler: rays skip intervals, so consecutive kept intervals
can leave gaps (intervals stay sorted along t), and density in skipped voxels gets no
gradient from rendering (it was below the bound in the whole neighbourhood).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.config import RenderConfig
from renderlss.ops.field import Field, VolumeField, grid_coordinates
from renderlss.ops.rays import Rays
from renderlss.ops.render import RenderOutput, volume_weights


def occupancy_bound(density: Tensor) -> Tensor:
    """Upper bound of the trilinear density anywhere inside each voxel (no gradient).

    Args:
        density: [1, 1, X, Y, Z] sigma >= 0.
    Returns:
        [X * Y * Z] float32, flattened [x, y, z]: the max over the 3 x 3 x 3 neighbourhood.
    """
    with torch.no_grad():
        return F.max_pool3d(density.detach().float(), 3, stride=1, padding=1).flatten()


def _voxel_of_coords(coords: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Flat [x, y, z] index of the voxel a point of ``grid_coordinates`` [..., 3] (z, y, x)
    falls in; points on the upper faces go to the last voxel, as interpolation holds it."""
    sizes = torch.tensor(shape[::-1], device=coords.device)  # (Z, Y, X), the coords' order
    cell = torch.floor((coords + 1.0) * 0.5 * sizes).long()
    cell = torch.minimum(cell.clamp(min=0), sizes - 1)
    z, y, x = cell.unbind(-1)
    return (x * shape[1] + y) * shape[2] + z


def _sigma_only(field: Field) -> Callable[[Tensor], Tensor]:
    """The density of a field, skipping the logits where the field allows it."""
    if isinstance(field, VolumeField):
        return field.sigma
    return lambda coords: field(coords)[0]


def _kept_samples(
    field: Field,
    bound: Tensor,
    grid: VoxelGrid,
    ray_coords: tuple[Tensor, Tensor],
    t_enter: Tensor,
    t_exit: Tensor,
    counts: Tensor,
    config: RenderConfig,
    step: float,
    jitter: bool,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Candidates on every interval of the rays [r], reduced to the samples worth making.

    Returns:
        ray_indices [M] (sorted), t_starts [M], t_ends [M], positions [M] of the kept samples.
    """
    index = torch.arange(max(int(counts.max()), 1), device=counts.device)
    valid = index < counts.unsqueeze(1)  # [r, S]
    exit_ = t_exit.unsqueeze(1)
    starts = torch.where(valid, t_enter.unsqueeze(1) + index * step, exit_)
    ends = torch.minimum(starts + step, exit_)
    if jitter:
        offset = torch.rand(starts.shape, device=starts.device, generator=generator)
    else:
        offset = torch.full_like(starts, 0.5)
    positions = starts + offset * (ends - starts)
    origins, directions = (coords.unsqueeze(1) for coords in ray_coords)
    coords = origins + positions.unsqueeze(-1) * directions  # [r, S, 3]
    # Per-ray bound: skipped samples sum to at most skip_optical_depth over the ray.
    threshold = config.skip_optical_depth / (t_exit - t_enter).clamp(min=1e-6)
    keep = valid & (bound[_voxel_of_coords(coords, grid.shape)] > threshold.unsqueeze(1))
    if config.early_stop_eps > 0:
        rows, columns = torch.nonzero(keep, as_tuple=True)
        sigmas = _sigma_only(field)(coords[rows, columns]).float()
        optical = sigmas * (ends - starts)[rows, columns]
        depth = torch.zeros_like(starts).index_put((rows, columns), optical)
        before = depth.cumsum(dim=1) - depth  # optical depth in front of each sample
        keep &= before < -math.log(config.early_stop_eps)
    rows, columns = torch.nonzero(keep, as_tuple=True)
    return rows, starts[rows, columns], ends[rows, columns], positions[rows, columns]


def render_chunk_packed(
    field: Field,
    bound: Tensor,
    rays: Rays,
    t_enter: Tensor,
    t_exit: Tensor,
    counts: Tensor,
    grid: VoxelGrid,
    config: RenderConfig,
    step: float,
    jitter: bool,
    generator: torch.Generator | None,
) -> RenderOutput:
    """Rays [r] with their box segments and dense counts -> RenderOutput of [r] rays.

    Args:
        field: evaluated on the kept samples only.
        bound: ``occupancy_bound`` of the field's density, [X * Y * Z].
        rays: origins, directions [r, 3], z_per_t [r], float32.
        t_enter, t_exit, counts: [r] segment in the box and dense interval count.
    """
    ray_coords = (
        grid_coordinates(rays.origins, grid),
        grid_coordinates(rays.directions, grid, True),
    )
    with torch.no_grad():
        ray_indices, t_starts, t_ends, positions = _kept_samples(
            field, bound, grid, ray_coords, t_enter, t_exit, counts, config, step, jitter, generator
        )
    coords = ray_coords[0][ray_indices] + positions.unsqueeze(-1) * ray_coords[1][ray_indices]
    sigmas, logits = field(coords)  # [M], [M, K] or None
    num_rays = len(counts)
    per_ray = torch.bincount(ray_indices, minlength=num_rays)
    # Rank of each sample within its ray (samples are sorted by ray, then along it).
    first = torch.cumsum(per_ray, 0) - per_ray
    columns = torch.arange(len(ray_indices), device=counts.device) - first[ray_indices]
    width = max(int(per_ray.max()), 1)

    def padded(values: Tensor, fill: Tensor) -> Tensor:
        """[M] packed values -> [r, S'], ``fill`` [r] after each ray's samples."""
        rows = fill.unsqueeze(1).repeat(1, width)
        return rows.index_put((ray_indices, columns), values)

    zero = torch.zeros_like(t_exit)
    starts_padded, ends_padded = padded(t_starts, t_exit), padded(t_ends, t_exit)
    valid = padded(torch.ones_like(t_starts, dtype=torch.bool), zero.bool())
    weights_padded = volume_weights(
        starts_padded, ends_padded, padded(sigmas.float(), zero), valid, cuda_packed=True
    )
    weights = weights_padded[ray_indices, columns]  # [M]
    semantics = None
    if logits is not None:
        semantics = torch.zeros(num_rays, logits.shape[-1], device=weights.device).index_add(
            0, ray_indices, weights.unsqueeze(1) * logits.float()
        )
    depth = torch.zeros_like(zero).index_add(0, ray_indices, weights * positions)
    return RenderOutput(
        depth=depth * rays.z_per_t,
        opacity=weights_padded.sum(dim=1),
        semantics=semantics,
        weights=weights_padded,
        t_starts=starts_padded,
        t_ends=ends_padded,
        num_samples=torch.tensor(len(ray_indices), device=counts.device),
    )
