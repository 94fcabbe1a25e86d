"""Render supervision that carves: ray-termination, ray-query and 3D density terms, and the
density initialisation, on analytic cases (a slab at known depth) with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.models.config import HeadConfig, LossConfig, ModelConfig
from renderlss.models.heads import build_head
from renderlss.models.losses import (
    occupancy_bce_loss,
    ray_termination_loss,
    target_distance,
    termination_kernel_width,
)
from renderlss.models.objective import ray_query_terms
from renderlss.models.occupancy_net import OccupancyNet
from renderlss.models.ray_query import (
    entry_distance,
    query_points,
    ray_query_samples,
    voxel_labels_from_queries,
    voxel_peak_density,
)
from renderlss.ops.config import RenderConfig
from renderlss.ops.rays import Rays
from renderlss.ops.render import render_rays, sample_volume

# A 1-D world along +x: 20 voxels of 1 m in x, one voxel across in y and z.
LINE = VoxelGrid(point_cloud_range=(0.0, -0.5, -0.5, 20.0, 0.5, 0.5), voxel_size=(1.0, 1.0, 1.0))


def slab_density(first: int, last: int, sigma: float) -> torch.Tensor:
    """[1, 1, 20, 1, 1] density: ``sigma`` in voxels first..last (x in [first, last + 1) m)."""
    density = torch.zeros(1, 1, 20, 1, 1)
    density[0, 0, first : last + 1] = sigma
    return density


def x_rays(count: int) -> Rays:
    """``count`` rays from x = 0 along +x (camera z = x: z_per_t = 1), shaped [1, R]."""
    origins = torch.zeros(1, count, 3)
    directions = torch.tensor([1.0, 0.0, 0.0]).expand(1, count, 3).clone()
    return Rays(origins, directions, torch.ones(1, count))


def test_target_distance_and_kernel_width_by_hand():
    t = target_distance(torch.tensor([10.0, 3.0]), torch.tensor([0.5, 1.0]))
    assert t.tolist() == [20.0, 3.0]
    width = termination_kernel_width(t, torch.tensor([1.0, 0.5]), 0.2, 0.01)
    assert width.tolist() == pytest.approx([0.2 + 0.2, (0.2 + 0.03) / 0.5])


def test_termination_loss_two_intervals_by_hand():
    # Kernel N(1, 0.5) on [0, 1] and [1, 2]: half the mass each, by symmetry.
    t_starts, t_ends = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]])
    weights = torch.tensor([[0.2, 0.7]])
    loss = ray_termination_loss(weights, t_starts, t_ends, torch.tensor([1.0]), torch.tensor([0.5]))
    expected = -0.5 * (math.log(0.2 + 1e-5) + math.log(0.7 + 1e-5))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_termination_loss_is_least_when_weights_match_the_kernel():
    t_starts = torch.arange(0.0, 10.0, 0.5)[None]
    t_ends = t_starts + 0.5
    centre, sigma = 5.0, 0.5

    def cdf(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf((t - centre) / (sigma * math.sqrt(2))))

    kernel = cdf(t_ends) - cdf(t_starts)
    kernel = kernel / kernel.sum()
    args = (t_starts, t_ends, torch.tensor([centre]), torch.tensor([sigma]))
    at_kernel = ray_termination_loss(kernel, *args)
    entropy = -(kernel * torch.log(kernel + 1e-5)).sum()
    assert float(at_kernel) == pytest.approx(float(entropy), rel=1e-5)
    # All weight two metres in front of the surface (a floater) costs more.
    early = torch.zeros_like(kernel)
    early[0, 6] = 1.0
    assert float(ray_termination_loss(early, *args)) > float(at_kernel) + 1.0
    # Rays without a target are left out; none at all gives 0.
    none = ray_termination_loss(kernel, t_starts, t_ends, torch.tensor([0.0]), torch.tensor([0.5]))
    assert float(none) == 0.0


def test_termination_loss_on_a_rendered_slab_pulls_mass_to_the_surface():
    config = RenderConfig(step_fraction=0.5, jitter=False, early_stop_eps=0.0)
    rays = x_rays(1)
    target = torch.tensor([8.0])
    width = torch.tensor([0.5])

    def loss_of(density: torch.Tensor) -> torch.Tensor:
        out = render_rays(density, None, rays, LINE, config, training=False)
        return ray_termination_loss(out.weights[0], out.t_starts[0], out.t_ends[0], target, width)

    at_surface = loss_of(slab_density(8, 19, 50.0))
    in_front = loss_of(slab_density(4, 19, 50.0))
    assert float(at_surface) < float(in_front)
    # From a volume too thin to stop the ray, the gradient raises density at the surface
    # and lowers it in front of the surface.
    density = torch.full((1, 1, 20, 1, 1), 0.05, requires_grad=True)
    loss_of(density).backward()
    grad = density.grad[0, 0, :, 0, 0]
    assert grad[8] < 0 < grad[3]


def test_occupancy_bce_by_hand():
    density = torch.tensor([0.0, 1.0, 2.0, 3.0])
    occupied = torch.tensor([False, True, True, False])
    loss = occupancy_bce_loss(density, occupied, 0.5)
    expected = (0.0 - math.log(1 - math.exp(-0.5)) - math.log(1 - math.exp(-1.0)) + 1.5) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    weighted = occupancy_bce_loss(density, occupied, 0.5, torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert float(weighted) == pytest.approx(-math.log(1 - math.exp(-1.0)), rel=1e-6)


def test_query_points_by_hand():
    points = query_points(
        torch.tensor([1.0, 1.0, 1.0]),
        torch.tensor([9.0, 1.5, 0.0]),
        num_free=4,
        num_occupied=2,
        free_margin=1.0,
        occupied_depth=1.0,
        jitter=False,
    )
    # Free space [1, 8] in 4 strata, midpoints; occupied [9, 10] in 2.
    assert points.t_free[0].tolist() == pytest.approx([1.875, 3.625, 5.375, 7.125])
    assert points.t_occupied[0].tolist() == pytest.approx([9.25, 9.75])
    # A surface within the margin of the entry has no free space; no depth, no points.
    assert points.free_valid.tolist() == [[True] * 4, [False] * 4, [False] * 4]
    assert points.occupied_valid.tolist() == [[True] * 2, [True] * 2, [False] * 2]
    jittered = query_points(torch.ones(500), torch.full((500,), 9.0), 4, 2, 1.0, 1.0, jitter=True)
    strata = torch.floor((jittered.t_free - 1.0) / 1.75)
    assert (strata == torch.arange(4)).all()
    assert ((jittered.t_occupied >= 9.0) & (jittered.t_occupied <= 10.0)).all()


def test_entry_distance_and_samples_on_the_slab():
    rays = x_rays(1)
    origins = rays.origins - torch.tensor([5.0, 0.0, 0.0])  # 5 m in front of the box
    assert float(entry_distance(origins, rays.directions, LINE, 0.0)) == pytest.approx(5.0)
    assert float(entry_distance(rays.origins, rays.directions, LINE, 2.0)) == pytest.approx(2.0)
    density = slab_density(8, 9, 4.0)
    t = torch.tensor([[[3.5, 8.5, 9.5, 25.0]]])
    sigma, _, inside = ray_query_samples(density, None, rays.origins, rays.directions, t, LINE)
    assert sigma[0, 0, :3].tolist() == pytest.approx([0.0, 4.0, 4.0])
    assert inside[0, 0].tolist() == [True, True, True, False]


def _query_loss(density: torch.Tensor, t_target: float) -> torch.Tensor:
    """The occupancy ray-query term of one +x ray with a surface at ``t_target``."""
    rays = x_rays(1)
    config = LossConfig(query_weight=1.0, query_free_points=16, query_occupied_points=4)
    points = query_points(
        torch.zeros(1, 1), torch.tensor([[t_target]]), 16, 4, 1.0, 1.0, jitter=False
    )
    queries = {}
    for part, t, valid in (
        ("free", points.t_free, points.free_valid),
        ("occupied", points.t_occupied, points.occupied_valid),
    ):
        sigma, _, inside = ray_query_samples(density, None, rays.origins, rays.directions, t, LINE)
        queries[f"{part}_density"], queries[f"{part}_valid"] = sigma, valid & inside
    targets = dict(confidence=torch.ones(1, 1), semantics=torch.zeros(1, 1, dtype=torch.uint8))
    return ray_query_terms(queries, targets, config, None, 255, 1.0)["query"]


def test_ray_query_loss_on_a_slab():
    # Surface at x = 8: free points sit in [0, 7], occupied ones in [8, 9].
    correct = _query_loss(slab_density(8, 19, 20.0), 8.0)
    # The occupied half: -log(1 - exp(-20)) ~ 2e-9; the free half: 0 (no density at x < 7.5).
    assert float(correct) == pytest.approx(0.0, abs=1e-6)
    # The slab 3 m too near: the free points in [5, 7] cost sigma * L = 20 each.
    wrong = _query_loss(slab_density(5, 19, 20.0), 8.0)
    free_in_slab = torch.tensor([(i + 0.5) * 7 / 16 for i in range(16)])
    # Trilinear: voxel 4's centre is 4.5 m, voxel 5's is 5.5 m; density ramps between them.
    ramp = torch.clamp(free_in_slab - 4.5, 0.0, 1.0) * 20.0
    assert float(wrong) == pytest.approx(0.5 * float(ramp.mean()), rel=1e-5)
    # Its gradient lowers density in front of the surface and raises it behind.
    density = torch.full((1, 1, 20, 1, 1), 1.0, requires_grad=True)
    _query_loss(density, 8.0).backward()
    grad = density.grad[0, 0, :, 0, 0]
    assert grad[3] > 0 > grad[8]


def test_initial_density_is_exact_everywhere():
    head = build_head(HeadConfig(num_classes=3, initial_density=0.02), in_channels=5)
    density, _ = head(torch.randn(2, 5, 4, 3, 2) * 10)
    torch.testing.assert_close(density, torch.full_like(density, 0.02))
    default = build_head(HeadConfig(num_classes=3), in_channels=5)
    assert not torch.allclose(default(torch.randn(2, 5, 4, 3, 2))[0], density)
    with pytest.raises(ValueError, match="initial_density"):
        HeadConfig(initial_density=0.0).validate("model.head")


def test_loss_config_rejects_bad_query_settings():
    with pytest.raises(ValueError, match="query_free_points"):
        LossConfig(query_free_points=0).validate("model.loss")
    with pytest.raises(ValueError, match="termination_width"):
        LossConfig(termination_width=0.0).validate("model.loss")
    ModelConfig().loss.validate("model.loss")


def test_peak_density_against_the_octant_centres_one_by_one():
    grid = VoxelGrid(point_cloud_range=(0.0, 0.0, 0.0, 3.0, 2.0, 2.0), voxel_size=(1.0, 1.0, 1.0))
    torch.manual_seed(0)
    density = torch.rand(1, 1, 3, 2, 2) * 5
    peak = voxel_peak_density(density)
    offsets = torch.tensor([[dx, dy, dz] for dx in (-1, 1) for dy in (-1, 1) for dz in (-1, 1)])
    for index in torch.cartesian_prod(*(torch.arange(n) for n in grid.shape)):
        centre = index.float() + 0.5
        points = (centre + 0.25 * offsets.float())[None]  # [1, 8, 3]
        values = sample_volume(density, points, grid)[0, :, 0]
        assert float(peak[0, 0, index[0], index[1], index[2]]) == pytest.approx(
            float(values.max()), rel=1e-5
        )
    # The road case: a dense layer under a free one still reads as occupied at the boundary.
    layers = torch.tensor([10.0, 0.0]).view(1, 1, 1, 1, 2)
    assert voxel_peak_density(layers)[0, 0, 0, 0].tolist() == pytest.approx([10.0, 2.5])


def test_voxel_labels_from_one_ray_by_hand():
    rays = x_rays(1)
    points = query_points(torch.zeros(1, 1), torch.tensor([[8.2]]), 8, 2, 0.25, 0.25, jitter=False)
    state, cls = voxel_labels_from_queries(
        rays.origins, rays.directions, points, torch.tensor([[4]]), LINE
    )
    # Free points at (i + 0.5) * 7.95 / 8 along x: in voxels 0, 1, 2, 3, 4, 5, 6, 7; the
    # occupied ones at 8.2625 and 8.3875: voxel 8, class 4. Nothing beyond.
    assert state[0, :, 0, 0].tolist() == [1] * 8 + [2] + [0] * 11
    assert int(cls[0, 8, 0, 0]) == 4
    # A second ray's free point inside an occupied voxel does not free it.
    two = query_points(
        torch.zeros(1, 2), torch.tensor([[8.2, 12.0]]), 8, 2, 0.25, 0.25, jitter=False
    )
    state, _ = voxel_labels_from_queries(
        x_rays(2).origins, x_rays(2).directions, two, torch.tensor([[4, 5]]), LINE
    )
    assert int(state[0, 8, 0, 0]) == 2 and int(state[0, 12, 0, 0]) == 2


def test_query_losses_read_the_query_rays_where_the_batch_has_them(monkeypatch):
    grid = VoxelGrid(point_cloud_range=(-4.0, -4.0, -1.0, 4.0, 4.0, 1.0), voxel_size=(1.0,) * 3)
    loss = LossConfig(query_weight=1.0, query_sampling="voxel", query_free_margin=0.25)
    model = OccupancyNet(ModelConfig(loss=loss), grid, RenderConfig(near=0.0)).eval()
    density = torch.zeros(1, 1, *grid.shape)
    monkeypatch.setattr(model, "volume", lambda batch: dict(density=density))
    monkeypatch.setattr(model, "render", lambda predictions, rays: None)

    def rays_along(direction: list[float]) -> dict[str, torch.Tensor]:
        """One ray from the centre with a surface 3.5 m away, class 2."""
        return dict(
            origins=torch.zeros(1, 1, 3),
            dirs=torch.tensor([[direction]]),
            z_per_t=torch.ones(1, 1),
            depth=torch.tensor([[3.5]]),
            semantics=torch.tensor([[2]], dtype=torch.uint8),
            confidence=torch.ones(1, 1),
        )

    along_x, along_y = rays_along([1.0, 0.0, 0.0]), rays_along([0.0, 1.0, 0.0])
    # Voxel (x, y) = (5, 4) is x in [1, 2], y in [0, 1]; (4, 5) its mirror across x = y.
    state = model({"targets": along_x})[0]["queries"]["voxel_state"][0, :, :, 1]
    assert (int(state[5, 4]), int(state[7, 4]), int(state[4, 5])) == (1, 2, 0)
    both = {"targets": along_x, "query_targets": along_y}
    state = model(both)[0]["queries"]["voxel_state"][0, :, :, 1]
    assert (int(state[5, 4]), int(state[4, 5]), int(state[4, 7])) == (0, 1, 2)
