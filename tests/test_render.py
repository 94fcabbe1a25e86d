"""Volume renderer: box intersection, trilinear mapping, analytic volumes, reference agreement."""

import math

import pytest
import torch

from renderlss.configuration import ConfigError, from_dict
from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.config import RenderConfig
from renderlss.ops.rays import Rays, pixel_rays
from renderlss.ops.reference import render_dense_reference, weights_reference
from renderlss.ops.render import (
    ray_box_intersection,
    render_rays,
    sample_volume,
    volume_weights,
)

LOWER = torch.tensor([0.0, 0.0, 0.0])
UPPER = torch.tensor([2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("origin", "direction", "enter", "exit_"),
    [
        ((-1.0, 1.0, 1.0), (1.0, 0.0, 0.0), 1.0, 3.0),  # straight through
        ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0), -1.0, 1.0),  # starting inside
        ((0.0, 1.0, 1.0), (0.0, 1.0, 0.0), -1.0, 1.0),  # on a face, parallel to it
        ((3.0, 1.0, 1.0), (1.0, 0.0, 0.0), -3.0, -1.0),  # box behind the origin
        ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), 1.0, 3.0),  # through opposite corners
    ],
)
def test_ray_box_intersection_hand_cases(origin, direction, enter, exit_):
    t_enter, t_exit = ray_box_intersection(
        torch.tensor(origin), torch.tensor(direction), LOWER, UPPER
    )
    assert float(t_enter) == pytest.approx(enter)
    assert float(t_exit) == pytest.approx(exit_)


@pytest.mark.parametrize(
    ("origin", "direction"),
    [
        ((-1.0, 3.0, 1.0), (1.0, 0.0, 0.0)),  # parallel to the y faces, outside that slab
        ((-1.0, 1.0, 1.0), (0.6, 0.8, 0.0)),  # leaves the y slab before entering the x slab
        ((-1.0, 1.0, 1.0), (-1.0, 0.0, 0.0)),  # pointing away (the line hits, t < 0)
    ],
)
def test_ray_box_intersection_misses(origin, direction):
    t_enter, t_exit = ray_box_intersection(
        torch.tensor(origin), torch.tensor(direction), LOWER, UPPER
    )
    assert float(t_exit) < float(t_enter) or float(t_exit) < 0


def test_trilinear_mapping_hand_case():
    # 3 x 2 x 4 voxels of 1 m from the origin; value i + 10 j + 100 k is linear, so trilinear
    # interpolation reproduces it exactly between voxel centres (at (i + 0.5, j + 0.5, k + 0.5)).
    grid = VoxelGrid(point_cloud_range=(0.0, 0.0, 0.0, 3.0, 2.0, 4.0), voxel_size=(1.0, 1.0, 1.0))
    i, j, k = torch.meshgrid(torch.arange(3.0), torch.arange(2.0), torch.arange(4.0), indexing="ij")
    values = (i + 10 * j + 100 * k)[None, None]
    volume = torch.cat([values, -values])  # [2, 1, 3, 2, 4]
    points = torch.tensor(
        [
            [0.5, 1.5, 0.5],  # centre of voxel (0, 1, 0): 10
            [1.2, 0.9, 2.5],  # 0.7 + 4 + 200
            [2.5, 1.5, 3.5],  # centre of the last voxel: 2 + 10 + 300
            [0.1, 0.2, 3.9],  # between the faces and the outermost centres: held at (0, 0, 3)
        ]
    )
    sampled = sample_volume(volume, points.expand(2, 4, 3), grid)
    expected = torch.tensor([10.0, 204.7, 312.0, 300.0])
    assert sampled.shape == (2, 4, 1)
    torch.testing.assert_close(sampled[0, :, 0], expected)
    torch.testing.assert_close(sampled[1, :, 0], -expected)


# A slab of constant density filling x in [2, 6] (the whole grid box, which is wide in y and
# z), seen by a camera at the ego origin looking along +x: camera z = ego x, so the slab entry
# is at camera z = 2 for every pixel.
SLAB = VoxelGrid(point_cloud_range=(2.0, -20.0, -20.0, 6.0, 20.0, 20.0), voxel_size=(0.5, 5, 5))
FRONT = torch.tensor(
    [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
    dtype=torch.float64,
)
K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _slab_rays() -> Rays:
    """Tilted rays (up to ~37 degrees off axis) plus one pointing away from the slab."""
    uv = torch.tensor([[50.0, 50.0], [80.0, 20.0], [0.0, 100.0], [15.0, 70.0], [99.0, 99.0]])
    rays = pixel_rays(uv, torch.eye(3, dtype=torch.float64), K, FRONT)
    away = Rays(torch.zeros(1, 3), torch.tensor([[-1.0, 0.0, 0.0]]), torch.ones(1))
    return Rays(*(torch.cat([a, b])[None] for a, b in zip(rays, away)))


def _slab_volumes(sigma: float, logit: torch.Tensor):
    density = torch.full((1, 1, *SLAB.shape), sigma)
    logits = logit.view(1, -1, 1, 1, 1).expand(1, len(logit), *SLAB.shape).contiguous()
    return density, logits


@pytest.mark.parametrize("training", [False, True])
def test_slab_closed_form(training):
    sigma, logit = 0.3, torch.tensor([1.5, -2.0, 0.25])
    density, logits = _slab_volumes(sigma, logit)
    rays = _slab_rays()
    config = RenderConfig(step_fraction=0.1, early_stop_eps=0.0)
    out = render_rays(density, logits, rays, SLAB, config, training=training)

    z_per_t = rays.z_per_t[0, :-1].double()
    t_entry, length = 2.0 / z_per_t, 4.0 / z_per_t  # the ray's x component is z_per_t
    decay = torch.exp(-sigma * length)
    opacity = 1.0 - decay
    # depth = z_per_t * integral of t sigma exp(-sigma (t - t_entry)) over the slab
    depth = z_per_t * (t_entry * opacity + (1.0 - decay * (1.0 + sigma * length)) / sigma)
    torch.testing.assert_close(out.opacity[0, :-1].double(), opacity, rtol=0, atol=1e-5)
    # Midpoint samples are off by ~ sigma step^2 / 12 per unit weight; jitter adds noise.
    tolerance = 2e-4 if not training else 5e-3
    torch.testing.assert_close(out.depth[0, :-1].double(), depth, rtol=0, atol=tolerance)
    torch.testing.assert_close(
        out.semantics[0, :-1], out.opacity[0, :-1, None] * logit, rtol=1e-5, atol=1e-6
    )
    # The ray pointing away sees nothing.
    assert float(out.opacity[0, -1]) == 0.0 and float(out.depth[0, -1]) == 0.0
    assert torch.isfinite(out.weights).all() and torch.isfinite(out.t_starts).all()


def test_opaque_slab_depth_is_entry_camera_z():
    density, logits = _slab_volumes(1e4, torch.tensor([1.0]))
    rays = _slab_rays()
    config = RenderConfig(step_fraction=0.1)
    out = render_rays(density, logits, rays, SLAB, config, training=False)
    step = 0.1 * 0.5
    # Entry at camera z 2 for every pixel (ray lengths differ: 2 / z_per_t); the opaque first
    # interval puts the surface at its midpoint, half a step past the entry.
    expected = 2.0 + 0.5 * step * rays.z_per_t[0, :-1]
    torch.testing.assert_close(out.depth[0, :-1], expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(out.opacity[0, :-1], torch.ones(5))
    # Early termination stopped after the first segment of samples.
    assert out.weights.shape[-1] == config.segment_samples


def test_nerfacc_weights_match_torch_reference():
    gen = torch.Generator().manual_seed(0)
    t_starts = torch.cumsum(torch.rand(6, 40, generator=gen) * 0.3, dim=1)
    t_ends = t_starts + torch.rand(6, 40, generator=gen) * 0.3
    sigmas = (torch.rand(6, 40, generator=gen) * 3).requires_grad_(True)
    upstream = torch.randn(6, 40, generator=gen)

    weights = volume_weights(t_starts, t_ends, sigmas)
    (grad,) = torch.autograd.grad((weights * upstream).sum(), sigmas)
    expected = weights_reference(t_starts.double(), t_ends.double(), sigmas.double())
    (expected_grad,) = torch.autograd.grad((expected * upstream.double()).sum(), sigmas)
    torch.testing.assert_close(weights.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.double(), expected_grad.double(), rtol=1e-4, atol=1e-5)

    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed = volume_weights(t_starts.bfloat16(), t_ends.bfloat16(), sigmas.bfloat16())
    assert mixed.dtype == torch.float32


# A small grid whose outer voxel layer is empty, with cameras inside it.
SMALL = VoxelGrid(point_cloud_range=(-4.0, -4.0, -1.0, 4.0, 4.0, 1.4), voxel_size=(0.4, 0.4, 0.4))


def _random_scene(gen: torch.Generator, batch: int = 2, num_rays: int = 150):
    density = torch.rand(batch, 1, *SMALL.shape, generator=gen) ** 4 * 4.0
    density[:, :, [0, -1]] = 0
    density[:, :, :, [0, -1]] = 0
    density[:, :, :, :, [0, -1]] = 0
    logits = torch.randn(batch, 4, *SMALL.shape, generator=gen)
    origins = (torch.rand(batch, num_rays, 3, generator=gen) - 0.5) * torch.tensor([6, 6, 1.6])
    origins[..., 2] += 0.2
    directions = torch.nn.functional.normalize(
        torch.randn(batch, num_rays, 3, generator=gen), dim=-1
    )
    z_per_t = 0.5 + 0.5 * torch.rand(batch, num_rays, generator=gen)
    return density, logits, Rays(origins, directions, z_per_t)


def test_skipping_renderer_matches_dense_reference_values_and_gradients():
    density, logits, rays = _random_scene(torch.Generator().manual_seed(3))
    density.requires_grad_(True)
    logits.requires_grad_(True)
    upstream = torch.randn(2, 150, 4, generator=torch.Generator().manual_seed(4))
    # Small chunks and segments so that chunking, termination and padding are exercised.
    config = RenderConfig(early_stop_eps=0.0, chunk_size=37, segment_samples=8)
    step = config.step_fraction * min(SMALL.voxel_size)

    def loss(out):
        return out.depth.sum() + 3 * out.opacity.sum() + (out.semantics * upstream).sum()

    fast = render_rays(density, logits, rays, SMALL, config, training=False)
    fast_grads = torch.autograd.grad(loss(fast), (density, logits))
    dense = render_dense_reference(density, logits, rays, SMALL, step)
    dense_grads = torch.autograd.grad(loss(dense), (density, logits))

    assert 0.05 < float(fast.opacity.detach().mean()) < 0.95  # neither trivially empty nor opaque
    torch.testing.assert_close(fast.depth, dense.depth, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.opacity, dense.opacity, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.semantics, dense.semantics, rtol=1e-4, atol=1e-4)
    # The outer layer (density 0) gets different gradients by design: the dense reference's
    # last interval straddles the box face, the renderer's is clipped at it.
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(fast_grads[0][inner], dense_grads[0][inner], rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(fast_grads[1], dense_grads[1], rtol=1e-3, atol=1e-5)
    assert int(fast.num_samples) < int(dense.num_samples) / 2

    # Padding: zero weight, intervals sorted along every ray.
    assert (fast.t_starts[..., 1:] >= fast.t_starts[..., :-1]).all()
    assert (fast.t_ends >= fast.t_starts).all()
    padding = fast.t_ends == fast.t_starts
    assert padding.any() and (fast.weights[padding] == 0).all()


def test_early_termination_drops_little_weight():
    density, logits, rays = _random_scene(torch.Generator().manual_seed(5))
    density = density * 20  # mostly opaque, so marching can stop early
    eps = 1e-3
    full = render_rays(
        density, logits, rays, SMALL, RenderConfig(early_stop_eps=0.0, segment_samples=4), False
    )
    early = render_rays(
        density, logits, rays, SMALL, RenderConfig(early_stop_eps=eps, segment_samples=4), False
    )
    assert int(early.num_samples) < 0.7 * int(full.num_samples)
    # The dropped weight is below eps per ray; depths move by at most eps x the ray length.
    assert float((full.opacity - early.opacity).max()) <= eps
    assert float((full.opacity - early.opacity).min()) >= 0
    max_depth = math.dist(SMALL.point_cloud_range[:3], SMALL.point_cloud_range[3:])
    torch.testing.assert_close(early.depth, full.depth, rtol=0, atol=eps * max_depth)


@pytest.mark.parametrize(
    ("training", "early_stop_eps", "density_scale"),
    [(True, 0.0, 1.0), (False, 1e-3, 20.0), (True, 1e-3, 20.0)],
    ids=["jitter", "early termination", "both"],
)
def test_gradients_match_finite_differences(training, early_stop_eps, density_scale):
    # With a generator seeded afresh for every call the jittered samples are fixed, so the
    # render is a smooth function of the volumes; early termination keeps the same samples
    # for perturbations this small (checked), so central differences see the same function.
    density, logits, rays = _random_scene(torch.Generator().manual_seed(11), num_rays=60)
    density = density * density_scale
    upstream = torch.randn(2, 60, 4, generator=torch.Generator().manual_seed(12))
    config = RenderConfig(early_stop_eps=early_stop_eps, segment_samples=4, chunk_size=25)

    def render(d: torch.Tensor, lg: torch.Tensor):
        out = render_rays(d, lg, rays, SMALL, config, training, torch.Generator().manual_seed(13))
        loss = (
            out.depth.double().sum()
            + 3 * out.opacity.double().sum()
            + (out.semantics.double() * upstream).sum()
        )
        return loss, int(out.num_samples)

    inputs = (density.requires_grad_(True), logits.requires_grad_(True))
    loss, samples = render(*inputs)
    grads = torch.autograd.grad(loss, inputs)
    if early_stop_eps:
        full = render_rays(density, logits, rays, SMALL, RenderConfig(early_stop_eps=0.0), False)
        assert samples < 0.8 * int(full.num_samples)  # termination does cut samples
    generator = torch.Generator().manual_seed(14)
    for which in range(2):
        for _ in range(2):
            direction = torch.randn(inputs[which].shape, generator=generator)
            if which == 0:  # the empty outer layer stays empty (see the test above)
                direction = direction * (density.detach() > 0)
            h = 1e-2
            with torch.no_grad():
                moved = []
                for sign in (1, -1):
                    shifted = [x.detach().clone() for x in inputs]
                    shifted[which] += sign * h * direction
                    value, count = render(*shifted)
                    assert count == samples
                    moved.append(float(value))
            numeric = (moved[0] - moved[1]) / (2 * h)
            analytic = float((grads[which].double() * direction).sum())
            assert analytic == pytest.approx(numeric, rel=1e-3, abs=5e-4), which


def test_rays_missing_the_box_render_nothing():
    density, logits, _ = _random_scene(torch.Generator().manual_seed(8), batch=1)
    origins = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 0.0]]])
    directions = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    rays = Rays(origins, directions, torch.ones(1, 3))
    config = RenderConfig(far=0.5)  # the third ray starts inside but far cuts it at 0.5 m
    out = render_rays(density, logits, Rays(*(x[:, :2] for x in rays)), SMALL, config, True)
    assert out.depth.shape == (1, 2) and out.semantics.shape == (1, 2, 4)
    assert float(out.opacity.abs().sum() + out.depth.abs().sum() + out.semantics.abs().sum()) == 0
    assert int(out.num_samples) == 0
    short = render_rays(density, logits, Rays(*(x[:, 2:] for x in rays)), SMALL, config, False)
    assert float(short.t_ends.max()) == pytest.approx(0.5)


def test_chunking_does_not_change_results():
    density, logits, rays = _random_scene(torch.Generator().manual_seed(9))
    outputs = [
        render_rays(density, logits, rays, SMALL, RenderConfig(chunk_size=size), False)
        for size in (16, 4096)
    ]
    torch.testing.assert_close(outputs[0].depth, outputs[1].depth)
    torch.testing.assert_close(outputs[0].semantics, outputs[1].semantics)
    torch.testing.assert_close(outputs[0].weights, outputs[1].weights)


def test_render_outputs_float32_under_autocast():
    density, logits, rays = _random_scene(torch.Generator().manual_seed(6), num_rays=20)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = render_rays(density.bfloat16(), logits.bfloat16(), rays, SMALL, RenderConfig(), True)
    assert out.depth.dtype == out.weights.dtype == out.semantics.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nerfacc's packed path needs CUDA")
def test_cuda_packed_weights_match_batched():
    density, logits, rays = _random_scene(torch.Generator().manual_seed(7))
    cuda_rays = Rays(*(x.cuda() for x in rays))
    outputs = [
        render_rays(
            density.cuda(),
            logits.cuda(),
            cuda_rays,
            SMALL,
            RenderConfig(cuda_packed_weights=packed),
            training=False,
        )
        for packed in (False, True)
    ]
    torch.testing.assert_close(outputs[0].weights, outputs[1].weights)
    torch.testing.assert_close(outputs[0].depth, outputs[1].depth)


def test_render_config_schema():
    config = from_dict(RenderConfig, {"step_fraction": 0.25, "far": 60})
    assert config.far == 60.0 and config.jitter
    with pytest.raises(ConfigError, match="step_fraction"):
        from_dict(RenderConfig, {"step_fractoin": 0.25})
    with pytest.raises(ValueError, match="far"):
        from_dict(RenderConfig, {"near": 2.0, "far": 1.0})
    with pytest.raises(ValueError, match="early_stop_eps"):
        RenderConfig(early_stop_eps=1.0).validate("render")
