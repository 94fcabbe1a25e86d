"""Packed, empty-space-skipping sampler against dense stepping: values, gradients, skipping."""

import dataclasses
import logging

import pytest
import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.config import RenderConfig
from renderlss.ops.field import VolumeField
from renderlss.ops.rays import Rays
from renderlss.ops.render import render_rays

# Axes of different lengths, so a swapped axis in the occupancy lookup reads wrong voxels.
GRID = VoxelGrid(point_cloud_range=(-4.0, -3.2, -1.2, 4.0, 3.2, 1.2), voxel_size=(0.4, 0.4, 0.4))
DENSE = RenderConfig(segment_samples=8, chunk_size=50)
PACKED = dataclasses.replace(DENSE, sampler="packed")


def _centres() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    axes = [
        torch.linspace(lo + s / 2, hi - s / 2, n)
        for lo, hi, s, n in zip(GRID.lower, GRID.upper, GRID.voxel_size, GRID.shape)
    ]
    return torch.meshgrid(*axes, indexing="ij")


def _wall(sigma: float) -> torch.Tensor:
    """Density sigma on the voxels with centres at x in [2.2, 2.6], 0 elsewhere: [1, 1, X, Y, Z]."""
    x, _, _ = _centres()
    return (((x > 2.1) & (x < 2.7)).float() * sigma)[None, None]


def _sphere() -> torch.Tensor:
    """A soft ball of radius 1 m around (1, 0.5, 0), exactly empty beyond 1.4 m."""
    x, y, z = _centres()
    r = ((x - 1.0) ** 2 + (y - 0.5) ** 2 + z**2).sqrt()
    return (8.0 * (1.4 - r).clamp(min=0))[None, None]


def _smooth_random(gen: torch.Generator) -> torch.Tensor:
    """Blurred noise cut at a level: smooth blobs, about two thirds of the voxels exactly 0."""
    noise = torch.randn(1, 1, *GRID.shape, generator=gen)
    for _ in range(2):
        noise = torch.nn.functional.avg_pool3d(noise, 3, stride=1, padding=1)
    return 20.0 * (noise - noise.quantile(0.67)).clamp(min=0)


def _rays(gen: torch.Generator, num_rays: int = 120) -> Rays:
    """From around the grid centre towards +x (the wall), spread over a cone."""
    origins = (torch.rand(1, num_rays, 3, generator=gen) - 0.5) * torch.tensor([1.0, 2.0, 1.0])
    directions = torch.randn(1, num_rays, 3, generator=gen) * torch.tensor([0.3, 0.5, 0.3])
    directions[..., 0] += 1.0
    directions = torch.nn.functional.normalize(directions, dim=-1)
    return Rays(origins - torch.tensor([3.0, 0.0, 0.0]), directions, directions[..., 0])


def _render(density, logits, rays, config, training=False):
    return render_rays(
        density, logits, rays, GRID, config, training, torch.Generator().manual_seed(5)
    )


def _loss(out, upstream):
    return out.depth.sum() + 2 * out.opacity.sum() + (out.semantics * upstream).sum()


@pytest.mark.parametrize("scene", ["wall", "sphere", "smooth random"])
def test_packed_matches_dense_values_and_gradients(scene):
    gen = torch.Generator().manual_seed(1)
    density = {"wall": _wall(3.0), "sphere": _sphere(), "smooth random": _smooth_random(gen)}[scene]
    density.requires_grad_(True)
    logits = torch.randn(1, 4, *GRID.shape, generator=gen).requires_grad_(True)
    rays = _rays(gen)
    upstream = torch.randn(1, 120, 4, generator=gen)
    # Midpoint samples (jitter draws differ between the samplers) without termination, and
    # skip_optical_depth=0: packed makes exactly the dense samples that are not empty.
    dense_config = dataclasses.replace(DENSE, early_stop_eps=0.0)
    exact = dataclasses.replace(dense_config, sampler="packed", skip_optical_depth=0.0)
    outputs, grads = [], []
    for config in (dense_config, exact):
        out = _render(density, logits, rays, config)
        outputs.append(out)
        grads.append(torch.autograd.grad(_loss(out, upstream), (density, logits)))
    dense, packed = outputs
    assert 0.2 < float(dense.opacity.detach().mean()) < 0.99
    assert int(packed.num_samples) < int(dense.num_samples)
    torch.testing.assert_close(packed.depth, dense.depth, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(packed.opacity, dense.opacity, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(packed.semantics, dense.semantics, rtol=1e-2, atol=1e-3)
    # Voxels of zero density are skipped where their whole neighbourhood is empty, so they
    # get no rendering gradient; every voxel with density gets its full gradient.
    filled = density.detach() > 0
    torch.testing.assert_close(grads[1][0][filled], grads[0][0][filled], rtol=1e-2, atol=1e-4)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-2, atol=1e-4)


def test_default_skip_bound_keeps_renders_within_one_percent():
    gen = torch.Generator().manual_seed(2)
    # Faint haze (below the skip bound) everywhere plus the sphere.
    density = _sphere() + 1e-6
    logits = torch.randn(1, 3, *GRID.shape, generator=gen)
    rays = _rays(gen)
    dense = _render(density, logits, rays, DENSE)
    packed = _render(density, logits, rays, PACKED)
    assert int(packed.num_samples) < 0.5 * int(dense.num_samples)  # the haze is skipped
    scale = float(dense.depth.abs().max())
    torch.testing.assert_close(packed.depth, dense.depth, rtol=0, atol=1e-2 * scale)
    torch.testing.assert_close(packed.opacity, dense.opacity, rtol=0, atol=1e-2)


def test_no_samples_behind_an_opaque_wall():
    gen = torch.Generator().manual_seed(3)
    rays = _rays(gen)
    packed = _render(_wall(1e3), torch.randn(1, 2, *GRID.shape, generator=gen), rays, PACKED)
    real = packed.t_ends > packed.t_starts
    # Camera x of every sample: at most one interval past the wall's front face (x = 2).
    x = rays.origins[..., :1] + packed.t_ends * rays.directions[..., :1]
    step = PACKED.step_fraction * 0.4
    assert bool((x[real] <= 2.0 + step + 1e-4).all())
    # Every ray that reaches the wall has its samples there and only there.
    hits = packed.opacity > 0.999
    assert int(hits.sum()) > 40
    per_ray = real.sum(dim=-1)
    assert int(per_ray[hits].max()) <= 3


def test_sample_count_on_a_mostly_empty_volume():
    gen = torch.Generator().manual_seed(4)
    rays = _rays(gen)
    logits = torch.randn(1, 2, *GRID.shape, generator=gen)
    dense = _render(_sphere(), logits, rays, DENSE)
    packed = _render(_sphere(), logits, rays, PACKED)
    assert int(packed.num_samples) * 4 < int(dense.num_samples)
    # Hand count: a ray missing the ball's support (1.4 m + one voxel of neighbourhood)
    # gets no sample at all.
    empty = _render(torch.zeros(1, 1, *GRID.shape), logits, rays, PACKED)
    assert int(empty.num_samples) == 0
    assert float(empty.depth.abs().sum() + empty.opacity.sum() + empty.semantics.abs().sum()) == 0
    assert empty.weights.shape == (1, 120, 1) and bool((empty.t_ends == empty.t_starts).all())


def test_rays_missing_the_box_and_intervals_sorted():
    gen = torch.Generator().manual_seed(6)
    density = _smooth_random(gen)
    rays = _rays(gen, num_rays=30)
    away = Rays(
        torch.tensor([[[9.0, 0.0, 0.0]]]), torch.tensor([[[1.0, 0.0, 0.0]]]), torch.ones(1, 1)
    )
    rays = Rays(*(torch.cat([a, b], dim=1) for a, b in zip(rays, away)))
    out = _render(density, None, rays, PACKED, training=True)
    assert out.semantics is None and float(out.opacity[0, -1]) == 0.0
    assert bool((out.t_starts[..., 1:] >= out.t_ends[..., :-1] - 1e-6).all())
    padding = out.t_ends == out.t_starts
    assert bool((out.weights[padding] == 0).all())


def test_fields_with_and_without_occupancy(caplog):
    gen = torch.Generator().manual_seed(7)
    density = _sphere()
    logits = torch.randn(1, 3, *GRID.shape, generator=gen)
    rays = _rays(gen)
    field = VolumeField(density, logits)
    dense = _render(density, logits, rays, DENSE)
    with caplog.at_level(logging.WARNING, logger="renderlss.ops.render"):
        fallback = render_rays(None, None, rays, GRID, PACKED, False, field=[field])
    assert int(fallback.num_samples) == int(dense.num_samples)
    packed = render_rays(None, None, rays, GRID, PACKED, False, field=[field], occupancy=density)
    assert int(packed.num_samples) * 3 < int(dense.num_samples)
    torch.testing.assert_close(packed.depth, dense.depth, rtol=1e-2, atol=1e-3)


def test_sampler_options_are_checked():
    with pytest.raises(ValueError, match="sampler"):
        RenderConfig(sampler="sparse").validate("render")
    with pytest.raises(ValueError, match="skip_optical_depth"):
        RenderConfig(skip_optical_depth=-1.0).validate("render")
