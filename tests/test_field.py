"""The field seam of the renderer: VolumeField, the coordinate convention, render_rays(field=)."""

import pytest
import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.config import RenderConfig
from renderlss.ops.field import VolumeField, grid_coordinates
from renderlss.ops.rays import Rays
from renderlss.ops.render import render_rays, sample_volume

# 3 x 2 x 4 voxels of 1 m from the origin: the axes have different lengths, so a swapped
# coordinate order reads the wrong voxels.
GRID = VoxelGrid(point_cloud_range=(0.0, 0.0, 0.0, 3.0, 2.0, 4.0), voxel_size=(1.0, 1.0, 1.0))


def _linear_volumes():
    # i + 10 j + 100 k is linear, so trilinear interpolation reproduces it between centres.
    i, j, k = torch.meshgrid(torch.arange(3.0), torch.arange(2.0), torch.arange(4.0), indexing="ij")
    values = (i + 10 * j + 100 * k)[None, None]
    return values, torch.cat([values, -values, 2 * values], dim=1)


def test_volume_field_hand_values_and_coordinate_order():
    density, logits = _linear_volumes()
    points = torch.tensor([[[0.5, 1.5, 0.5], [1.2, 0.9, 2.5], [2.5, 1.5, 3.5]]])  # [1, 3, 3]
    expected = torch.tensor([10.0, 204.7, 312.0])
    coords = grid_coordinates(points, GRID)
    # Metric z is the first grid coordinate: z = 3.5 is 3.5 / 4 * 2 - 1 = 0.75.
    assert float(coords[0, 2, 0]) == pytest.approx(0.75)
    sigma, values = VolumeField(density, logits)(coords.view(1, 3, 1, 3))  # any leading shape
    assert sigma.shape == (1, 3, 1) and values.shape == (1, 3, 1, 3)
    torch.testing.assert_close(sigma[0, :, 0], expected)
    torch.testing.assert_close(values[0, :, 0], expected[:, None] * torch.tensor([1.0, -1.0, 2.0]))
    assert VolumeField(density)(coords)[1] is None
    torch.testing.assert_close(sample_volume(density, points, GRID)[0, :, 0], expected)


def _scene(gen: torch.Generator, batch: int = 2, num_rays: int = 40):
    density = torch.rand(batch, 1, *GRID.shape, generator=gen) * 2.0
    logits = torch.randn(batch, 5, *GRID.shape, generator=gen)
    origins = torch.rand(batch, num_rays, 3, generator=gen) * torch.tensor([3.0, 2.0, 4.0])
    directions = torch.nn.functional.normalize(
        torch.randn(batch, num_rays, 3, generator=gen), dim=-1
    )
    return density, logits, Rays(origins, directions, directions[..., 0].abs())


@pytest.mark.parametrize("training", [False, True])
def test_volume_fields_render_exactly_like_the_volumes(training):
    density, logits, rays = _scene(torch.Generator().manual_seed(0))
    density.requires_grad_(True)
    logits.requires_grad_(True)
    config = RenderConfig(segment_samples=3, chunk_size=15)

    def render(**volumes):
        out = render_rays(
            rays=rays,
            grid=GRID,
            config=config,
            training=training,
            generator=torch.Generator().manual_seed(1),
            **volumes,
        )
        loss = out.depth.sum() + (out.semantics**2).sum() + out.weights.square().sum()
        return out, torch.autograd.grad(loss, (density, logits))

    plain, plain_grads = render(density=density, logits=logits)
    fields = [VolumeField(density[b : b + 1], logits[b : b + 1]) for b in range(2)]
    seamed, seamed_grads = render(density=None, logits=None, field=fields)
    for name in ("depth", "opacity", "semantics", "weights", "t_starts", "t_ends", "num_samples"):
        assert torch.equal(getattr(plain, name), getattr(seamed, name)), name
    for a, b in zip(plain_grads, seamed_grads):
        assert torch.equal(a, b)


def test_analytic_field_renders_its_surface():
    # A network-like field given by a formula: opaque where metric x > 1.6 (the first grid
    # coordinate is z, the last x), with logits that are the coordinates themselves.
    wall_x = 1.6
    wall = (wall_x - GRID.lower[0]) / (GRID.upper[0] - GRID.lower[0]) * 2 - 1

    def field(coords: torch.Tensor):
        return (coords[..., 2] > wall).float() * 1e4, coords

    origins = torch.tensor([[[0.0, 0.5, 0.5], [0.0, 1.5, 3.5], [0.3, 1.0, 0.5]]])
    directions = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    rays = Rays(origins, directions, torch.ones(1, 3))
    config = RenderConfig(step_fraction=0.1)
    out = render_rays(None, None, rays, GRID, config, training=False, field=field)
    step = 0.1
    # Along x the wall is hit in the interval [1.6, 1.7]: its midpoint 1.65 (intervals start at
    # the entry x = 0, so 1.6 is an interval start). The ray along z never reaches it.
    torch.testing.assert_close(out.depth[0, :2], torch.full((2,), wall_x + step / 2))
    torch.testing.assert_close(out.opacity[0], torch.tensor([1.0, 1.0, 0.0]))
    # The logits at the surface point (x = 1.65, y, z) in grid coordinates (z, y, x).
    surface = torch.tensor([[1.65, 0.5, 0.5], [1.65, 1.5, 3.5]])
    torch.testing.assert_close(
        out.semantics[0, :2], grid_coordinates(surface, GRID), rtol=0, atol=1e-4
    )


def test_field_arguments_are_checked():
    density, logits, rays = _scene(torch.Generator().manual_seed(2))
    field = VolumeField(density[:1], logits[:1])
    config = RenderConfig()
    with pytest.raises(ValueError, match="either"):
        render_rays(density, None, rays, GRID, config, False, field=[field, field])
    with pytest.raises(ValueError, match="1 fields for 2"):
        render_rays(None, None, rays, GRID, config, False, field=[field])
    with pytest.raises(ValueError, match="density volume or a field"):
        render_rays(None, None, rays, GRID, config, False)
    with pytest.raises(ValueError, match="do not match"):
        VolumeField(density[:1], logits[:1, :, :2])
    # One shared field is used for every batch element.
    shared = render_rays(None, None, rays, GRID, config, False, field=field)
    first = render_rays(density[:1], logits[:1], Rays(*(x[:1] for x in rays)), GRID, config, False)
    torch.testing.assert_close(shared.depth[:1], first.depth)
