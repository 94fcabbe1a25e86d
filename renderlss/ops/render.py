"""Volume rendering of a field along camera rays.

By default the field is a density volume [B, 1, X, Y, Z] (sigma >= 0, per metre) and optional
semantic logits [B, K, X, Y, Z] over a ``VoxelGrid``; stored values sit at voxel centres and
are interpolated trilinearly (``renderlss.ops.field.VolumeField``). Inside the grid box the
values beyond the outermost centres are held constant (a boundary voxel is a full voxel);
outside the box the density is zero. A single volume with density in channel 0 is passed as
``volume[:, :1], volume[:, 1:]``.

The seam: ``render_rays(None, None, ..., field=fields)`` samples any ``Field`` instead, one
per batch element (e.g. a network decoding features at the sample points). A field maps
``grid_coordinates`` [..., 3] ((z, y, x) order, -1 and +1 on the box faces) to
``(sigma [...], logits [..., K] or None)``; it is asked only for points inside the grid box
(up to rounding at the faces); everything else below (sampling, termination, compositing) is
unchanged.

Per ray, with unit direction, ``t`` in metres along it, intervals ``[s_i, e_i]`` and sample
positions ``t_i`` inside them:

- ``alpha_i = 1 - exp(-sigma_i (e_i - s_i))``, ``T_i = prod_{j<i} (1 - alpha_j)``,
  ``w_i = T_i alpha_i`` (nerfacc, float32 even under autocast);
- depth ``= sum_i w_i t_i * z_per_t``: expected **camera z**, not normalised by opacity;
- semantics ``= sum_i w_i logits_i`` (raw logits); opacity ``= sum_i w_i``.

What is skipped (against ``renderlss.ops.reference.render_dense_reference``, which samples
every step from t = 0 to the grid diagonal): samples outside the ray's segment inside the
grid box (and outside [near, far]) are never made. Samples are made ``segment_samples`` at a
time, and only for the rays that still need them: a ray past its exit, or, with
``early_stop_eps > 0``, whose transmittance fell below it, is no longer interpolated; the
march of a chunk stops once all its rays are done.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from nerfacc import render_weight_from_density
from torch import Tensor

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.config import RenderConfig
from renderlss.ops.field import Field, VolumeField, grid_coordinates, sample_grid_coordinates
from renderlss.ops.rays import Rays

logger = logging.getLogger(__name__)


@dataclass
class RenderOutput:
    """Per-ray results. Samples are padded to a common count S: padding has zero weight and
    zero-length intervals after the ray's last real one, so intervals stay sorted along t."""

    depth: Tensor  # [B, R] expected camera z (not divided by opacity)
    opacity: Tensor  # [B, R] sum of weights
    semantics: Tensor | None  # [B, R, K] weighted sum of raw logits (None without logits)
    weights: Tensor  # [B, R, S] per-sample weights (distortion / entropy losses)
    t_starts: Tensor  # [B, R, S] interval starts, metres along the ray
    t_ends: Tensor  # [B, R, S] interval ends
    num_samples: Tensor  # [] int64, real samples (inside the box, before termination)


def ray_box_intersection(
    origins: Tensor, directions: Tensor, lower: Tensor, upper: Tensor
) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays through an axis-aligned box (slab method).

    Args:
        origins, directions: [..., 3] (directions need not be unit; t is in their units).
        lower, upper: [3] box corners.
    Returns:
        t_enter, t_exit: [...]; the ray's line is inside the box for t in [t_enter, t_exit],
        it misses when ``t_exit < t_enter``. ``t_enter`` is negative for an origin inside.
    """
    lower = lower.to(origins)
    upper = upper.to(origins)
    parallel = directions == 0
    # A ray parallel to a pair of faces is inside that slab for every t, or for none.
    inside_slab = (origins >= lower) & (origins <= upper)
    safe = torch.where(parallel, torch.ones_like(directions), directions)
    t_lower = (lower - origins) / safe
    t_upper = (upper - origins) / safe
    near = torch.minimum(t_lower, t_upper)
    far = torch.maximum(t_lower, t_upper)
    inf = torch.full_like(near, math.inf)
    near = torch.where(parallel, torch.where(inside_slab, -inf, inf), near)
    far = torch.where(parallel, torch.where(inside_slab, inf, -inf), far)
    return near.amax(dim=-1), far.amin(dim=-1)


def sample_volume(volume: Tensor, points: Tensor, grid: VoxelGrid) -> Tensor:
    """Trilinear interpolation of a voxel volume at metric points, in float32.

    Stored values sit at voxel centres; see ``sample_grid_coordinates`` for the box margin.
    The caller decides what happens outside the box.

    Args:
        volume: [B, C, X, Y, Z].
        points: [B, M, 3] (x, y, z) in the grid's frame.
        grid: the voxel grid of ``volume``.
    Returns:
        [B, M, C] float32.
    """
    _check_volume("sample_volume", volume, grid)
    coords = grid_coordinates(points, grid).unsqueeze(1)  # [B, 1, M, 3]
    return sample_grid_coordinates(volume, coords)[:, :, 0].transpose(1, 2)


def _check_volume(where: str, volume: Tensor, grid: VoxelGrid) -> None:
    if volume.dim() != 5 or tuple(volume.shape[2:]) != grid.shape:
        raise ValueError(
            f"{where}: volume {tuple(volume.shape)} does not fit grid {grid.shape} "
            "(expected [B, C, X, Y, Z])"
        )


def volume_weights(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    valid: Tensor | None = None,
    cuda_packed: bool = False,
) -> Tensor:
    """Rendering weights ``w_i = T_i (1 - exp(-sigma_i delta_i))`` in float32.

    Args:
        t_starts, t_ends, sigmas: [R, S] (padding: zero-length intervals).
        valid: [R, S] bool, real samples (a prefix of each row); used by the packed path.
        cuda_packed: use nerfacc's packed path for CUDA tensors.
    Returns:
        [R, S] float32 weights.
    """
    with torch.autocast(device_type=sigmas.device.type, enabled=False):
        t_starts, t_ends, sigmas = t_starts.float(), t_ends.float(), sigmas.float()
        if cuda_packed and sigmas.is_cuda and valid is not None:
            return _packed_weights_cuda(t_starts, t_ends, sigmas, valid)
        weights, _, _ = render_weight_from_density(t_starts, t_ends, sigmas)
        return weights


def _packed_weights_cuda(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, valid: Tensor) -> Tensor:
    """nerfacc's flattened form on the real samples only; padding gets weight 0."""
    ray_indices = torch.nonzero(valid)[:, 0]  # row-major, so sorted by ray as nerfacc needs
    packed, _, _ = render_weight_from_density(
        t_starts[valid], t_ends[valid], sigmas[valid], ray_indices=ray_indices, n_rays=len(valid)
    )
    return torch.zeros_like(sigmas).masked_scatter(valid, packed)


def render_rays(
    density: Tensor | None,
    logits: Tensor | None,
    rays: Rays,
    grid: VoxelGrid,
    config: RenderConfig,
    training: bool,
    generator: torch.Generator | None = None,
    field: Field | Sequence[Field] | None = None,
    occupancy: Tensor | None = None,
) -> RenderOutput:
    """Render depth, semantics and opacity along rays.

    Args:
        density: [B, 1, X, Y, Z] sigma >= 0 per metre (None with ``field``).
        logits: [B, K, X, Y, Z] semantic logits, or None.
        rays: origins, directions [B, R, 3] (unit), z_per_t [B, R], in the grid's frame.
        grid: the voxel grid of the volumes (and the box the field is sampled in).
        config: sampling parameters.
        training: jitter samples (when ``config.jitter``) instead of taking midpoints.
        generator: random source of the jitter.
        field: sampled instead of the volumes (``renderlss.ops.field``): a sequence of B
            fields, one per batch element, or one field shared by every batch element.
            ``density`` and ``logits`` must then be None.
        occupancy: [B, 1, X, Y, Z] density that the packed sampler bounds empty space with
            (``config.sampler="packed"``); default: ``density``. Fields without it are
            rendered by the dense sampler.
    Returns:
        RenderOutput with [B, R] depth/opacity, [B, R, K] semantics, [B, R, S] weights.
    """
    config.validate("RenderConfig")
    if rays.origins.dim() != 3:
        raise ValueError(
            f"render_rays: rays must be [B, R, 3], got origins {tuple(rays.origins.shape)}"
        )
    fields = _batch_fields(density, logits, rays.origins.shape[0], grid, field)
    bounds = _occupancy_bounds(occupancy if occupancy is not None else density, grid, config)
    step = config.step_fraction * float(min(grid.voxel_size))
    jitter = training and config.jitter
    # Sampling, weights and compositing all in float32: half-precision weights overflow.
    with torch.autocast(device_type=rays.origins.device.type, enabled=False):
        outputs = [
            _render_batch_element(
                fields[b],
                None if bounds is None else bounds[b],
                Rays(rays.origins[b].float(), rays.directions[b].float(), rays.z_per_t[b].float()),
                grid,
                config,
                step,
                jitter,
                generator,
            )
            for b in range(len(fields))
        ]
    return _stack(outputs)


def _batch_fields(
    density: Tensor | None,
    logits: Tensor | None,
    batch: int,
    grid: VoxelGrid,
    field: Field | Sequence[Field] | None,
) -> list[Field]:
    """One field per batch element: the given ones, or trilinear views of the volumes."""
    if field is not None:
        if density is not None or logits is not None:
            raise ValueError("render_rays: pass either the density/logits volumes or a field")
        fields = list(field) if isinstance(field, Sequence) else [field] * batch
        if len(fields) != batch:
            raise ValueError(f"render_rays: {len(fields)} fields for {batch} batch elements")
        return fields
    if density is None:
        raise ValueError("render_rays: a density volume or a field is needed")
    _check_volume("render_rays", density, grid)
    if density.shape[1] != 1:
        raise ValueError(
            f"render_rays: density must be [B, 1, X, Y, Z], got {tuple(density.shape)}"
        )
    if logits is not None and (logits.shape[0], *logits.shape[2:]) != (
        density.shape[0],
        *density.shape[2:],
    ):
        raise ValueError(
            f"render_rays: logits {tuple(logits.shape)} do not match density {tuple(density.shape)}"
        )
    if density.shape[0] != batch:
        raise ValueError(
            f"render_rays: rays must be [B, R, 3] with B = {density.shape[0]}, got B = {batch}"
        )
    return [
        VolumeField(density[b : b + 1], None if logits is None else logits[b : b + 1])
        for b in range(batch)
    ]


def _occupancy_bounds(
    occupancy: Tensor | None, grid: VoxelGrid, config: RenderConfig
) -> list[Tensor] | None:
    """Per batch element, the packed sampler's ``occupancy_bound``; None for dense sampling."""
    if config.sampler != "packed":
        return None
    if occupancy is None:
        _log_dense_fallback()
        return None
    _check_volume("render_rays (occupancy)", occupancy, grid)
    # The packed sampler builds on this module's output and weights.
    from renderlss.ops.packed_render import occupancy_bound

    return [occupancy_bound(occupancy[b : b + 1, :1]) for b in range(occupancy.shape[0])]


@functools.cache
def _log_dense_fallback() -> None:
    logger.warning(
        "render_rays: render.sampler='packed' needs a density volume (or occupancy=) to skip "
        "empty space; these fields are rendered by the dense sampler"
    )


def _render_batch_element(
    field: Field,
    bound: Tensor | None,
    rays: Rays,
    grid: VoxelGrid,
    config: RenderConfig,
    step: float,
    jitter: bool,
    generator: torch.Generator | None,
) -> RenderOutput:
    """One field, rays [R, 3], in chunks of rays; packed samples with an occupancy bound."""
    lower = torch.as_tensor(grid.lower, dtype=torch.float32, device=rays.origins.device)
    upper = torch.as_tensor(grid.upper, dtype=torch.float32, device=rays.origins.device)
    t_enter, t_exit = ray_box_intersection(rays.origins, rays.directions, lower, upper)
    t_enter = t_enter.clamp(min=config.near)
    if config.far is not None:
        t_exit = t_exit.clamp(max=config.far)
    counts = torch.ceil((t_exit - t_enter) / step).clamp(min=0).long()  # [R] samples per ray
    # A ray that misses can have infinite bounds; its (empty) samples sit at t = 0 instead.
    missed = counts == 0
    t_enter = torch.where(missed, torch.zeros_like(t_enter), t_enter)
    t_exit = torch.where(missed, torch.zeros_like(t_exit), t_exit)
    if bound is None:
        render_chunk = functools.partial(_render_chunk, field)
    else:
        from renderlss.ops.packed_render import render_chunk_packed

        render_chunk = functools.partial(render_chunk_packed, field, bound)
    chunks = []
    for start in range(0, len(counts), config.chunk_size):
        part = slice(start, start + config.chunk_size)
        chunks.append(
            render_chunk(
                Rays(*(x[part] for x in rays)),
                t_enter[part],
                t_exit[part],
                counts[part],
                grid,
                config,
                step,
                jitter,
                generator,
            )
        )
    return _concat(chunks)


class _Segment(NamedTuple):
    """A run of sample numbers for a chunk of r rays, a of which still needed samples.

    Rows of inactive rays, and samples past a ray's count, are zero-length at its exit."""

    t_starts: Tensor  # [r, s]
    t_ends: Tensor  # [r, s]
    positions: Tensor  # [r, s] where the field was interpolated
    sigmas: Tensor  # [r, s]
    valid: Tensor  # [r, s] bool, real samples
    active: Tensor  # [a] rows that were interpolated
    logits: Tensor | None  # [a, s, K] at the active rows


def _render_chunk(
    field: Field,
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
    """Rays [r]: march segment by segment, then composite every evaluated sample."""
    # Rays in grid_sample coordinates once, so a sample costs one multiply-add.
    ray_coords = (
        grid_coordinates(rays.origins, grid),
        grid_coordinates(rays.directions, grid, True),
    )
    # At least one (possibly empty) column, so rays that miss the box still get outputs.
    total = max(int(counts.max()), 1)
    # Optical depth so far; it only decides when to stop, so it carries no gradient.
    optical_depth = torch.zeros(len(counts), device=counts.device)
    stop_depth = -math.log(config.early_stop_eps) if config.early_stop_eps > 0 else math.inf
    segments: list[_Segment] = []
    for first in range(0, total, config.segment_samples):
        last = min(first + config.segment_samples, total)
        index = torch.arange(first, last, device=counts.device)
        segment = _sample_segment(
            field, ray_coords, t_enter, t_exit, counts, index, step, jitter, generator
        )
        segments.append(segment)
        with torch.no_grad():
            optical_depth += (segment.sigmas * (segment.t_ends - segment.t_starts)).sum(dim=1)
            # A nearly opaque ray gets no further samples; the chunk stops when all are done.
            opaque = optical_depth > stop_depth
            counts = torch.where(opaque, counts.clamp(max=last), counts)
        if bool((counts <= last).all()):
            break
    t_starts, t_ends, positions, sigmas, valid = (
        torch.cat([getattr(segment, name) for segment in segments], dim=1)
        for name in ("t_starts", "t_ends", "positions", "sigmas", "valid")
    )
    weights = volume_weights(t_starts, t_ends, sigmas, valid, config.cuda_packed_weights)
    semantics = None
    if segments[0].logits is not None:
        semantics = _composite_logits(weights, segments, segments[0].logits.shape[-1])
    return RenderOutput(
        depth=(weights * positions).sum(dim=1) * rays.z_per_t,
        opacity=weights.sum(dim=1),
        semantics=semantics,
        weights=weights,
        t_starts=t_starts,
        t_ends=t_ends,
        num_samples=valid.sum(),
    )


def _composite_logits(weights: Tensor, segments: list[_Segment], classes: int) -> Tensor:
    """sum_i w_i logits_i per ray [r, K], over the interpolated rows of each segment."""
    semantics = weights.new_zeros(weights.shape[0], classes)
    column = 0
    for segment in segments:
        width = segment.valid.shape[1]
        segment_weights = weights[segment.active, column : column + width]  # [a, s]
        partial = torch.einsum("as,ask->ak", segment_weights, segment.logits)
        semantics = semantics.index_add(0, segment.active, partial)
        column += width
    return semantics


def _sample_segment(
    field: Field,
    ray_coords: tuple[Tensor, Tensor],
    t_enter: Tensor,
    t_exit: Tensor,
    counts: Tensor,
    index: Tensor,
    step: float,
    jitter: bool,
    generator: torch.Generator | None,
) -> _Segment:
    """Samples number ``index`` [s] of every ray [r], with their field values.

    Only rays that still need samples are interpolated, as one dense [a, s] block: cheaper
    than gathering single samples, and at most ``s - 1`` padded samples per active ray.
    """
    num_rays = len(counts)
    active = torch.nonzero(counts > index[0]).squeeze(1)  # [a]
    exit_ = t_exit[active].unsqueeze(1)
    valid_active = index < counts[active].unsqueeze(1)  # [a, s]
    starts = torch.where(valid_active, t_enter[active].unsqueeze(1) + index * step, exit_)
    ends = torch.minimum(starts + step, exit_)
    if jitter:
        offset = torch.rand(starts.shape, device=starts.device, generator=generator)
    else:
        offset = torch.full_like(starts, 0.5)
    positions_active = starts + offset * (ends - starts)
    origins, directions = (coords[active].unsqueeze(1) for coords in ray_coords)
    coords = origins + positions_active.unsqueeze(-1) * directions  # [a, s, 3]
    sigmas_active, sample_logits = field(coords)  # [a, s], [a, s, K] or None

    def rows(values: Tensor, fill: Tensor) -> Tensor:
        """[a, s] values of the active rows -> [r, s], ``fill`` [r, 1] elsewhere."""
        return fill.expand(num_rays, len(index)).index_copy(0, active, values)

    exit_all = t_exit.unsqueeze(1)
    zero = torch.zeros_like(exit_all)
    return _Segment(
        t_starts=rows(starts, exit_all),
        t_ends=rows(ends, exit_all),
        positions=rows(positions_active, exit_all),
        sigmas=rows(sigmas_active, zero),
        valid=rows(valid_active, zero.bool()),
        active=active,
        logits=sample_logits,
    )


def _concat(chunks: list[RenderOutput]) -> RenderOutput:
    """Chunks along rays, padding samples to the longest chunk (zero weight; intervals
    repeat the last one, so a ray's intervals stay sorted along it)."""
    width = max(c.weights.shape[1] for c in chunks)

    def padded(tensor: Tensor, mode: str) -> Tensor:
        return F.pad(tensor, (0, width - tensor.shape[1]), mode=mode)

    return RenderOutput(
        depth=torch.cat([c.depth for c in chunks]),
        opacity=torch.cat([c.opacity for c in chunks]),
        semantics=None if chunks[0].semantics is None else torch.cat([c.semantics for c in chunks]),
        weights=torch.cat([padded(c.weights, "constant") for c in chunks]),
        t_starts=torch.cat([padded(c.t_starts, "replicate") for c in chunks]),
        t_ends=torch.cat([padded(c.t_ends, "replicate") for c in chunks]),
        num_samples=sum(c.num_samples for c in chunks),
    )


def _stack(outputs: list[RenderOutput]) -> RenderOutput:
    """Batch elements -> [B, R, ...], padding samples to the longest."""
    merged = _concat(outputs)
    batch = len(outputs)
    return RenderOutput(
        depth=merged.depth.view(batch, -1),
        opacity=merged.opacity.view(batch, -1),
        semantics=None
        if merged.semantics is None
        else merged.semantics.view(batch, -1, merged.semantics.shape[-1]),
        weights=merged.weights.view(batch, -1, merged.weights.shape[-1]),
        t_starts=merged.t_starts.view(batch, -1, merged.t_starts.shape[-1]),
        t_ends=merged.t_ends.view(batch, -1, merged.t_ends.shape[-1]),
        num_samples=merged.num_samples,
    )
