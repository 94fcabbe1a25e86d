"""Splat variants against a brute-force per-point loop: values and gradients."""

import math

import numpy as np
import pytest
import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.reference import splat_cumsum_reference
from renderlss.ops.splat import (
    plan_splat,
    splat,
    splat_depth_context,
    splat_planned,
    voxel_index,
)

GRID = VoxelGrid(point_cloud_range=(-2.0, -1.0, -1.0, 2.0, 1.0, 0.5), voxel_size=(0.5, 0.5, 0.25))
SHAPE = (2, 2, 3, 2, 3)  # B, N, D, h, w
CHANNELS = 4


def _points(generator: torch.Generator) -> torch.Tensor:
    """Random points around the grid, some planted just below its lower corner."""
    lower = torch.tensor(GRID.point_cloud_range[:3])
    upper = torch.tensor(GRID.point_cloud_range[3:])
    span = upper - lower
    pts = lower - 0.2 * span + 1.4 * span * torch.rand(*SHAPE, 3, generator=generator)
    flat = pts.view(-1, 3)
    size = torch.tensor(GRID.voxel_size)
    # Negative fractional voxel coordinates: truncation would keep these in voxel 0.
    flat[0] = lower + torch.tensor([-0.3, 0.5, 0.5]) * size
    flat[1] = lower + torch.tensor([0.5, -0.7, 1.5]) * size
    flat[2] = lower + torch.tensor([1.5, 2.5, -0.01]) * size
    # On the lower faces (inside) and on an upper face (outside).
    flat[3] = lower
    flat[4] = torch.stack([upper[0], lower[1] + 0.1, lower[2] + 0.1])
    return pts


def _brute_voxel(point) -> tuple[int, int, int] | None:
    """Voxel of one point by explicit floor, or None when outside."""
    cell = []
    for axis in range(3):
        coord = (float(point[axis]) - GRID.point_cloud_range[axis]) / GRID.voxel_size[axis]
        index = math.floor(coord)
        if not 0 <= index < GRID.shape[axis]:
            return None
        cell.append(index)
    return tuple(cell)


def _all_cells():
    b_, n_, d_, h_, w_ = SHAPE
    for b in range(b_):
        for n in range(n_):
            for d in range(d_):
                for i in range(h_):
                    for j in range(w_):
                        yield b, n, d, i, j


def _brute_splat(features: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[B, C, X, Y, Z] by looping over every frustum point."""
    volume = np.zeros((SHAPE[0], features.shape[-1], *GRID.shape))
    for b, n, d, i, j in _all_cells():
        voxel = _brute_voxel(points[b, n, d, i, j])
        if voxel is not None:
            volume[(b, slice(None), *voxel)] += features[b, n, d, i, j]
    return volume


@pytest.fixture()
def inputs():
    gen = torch.Generator().manual_seed(0)
    points = _points(gen)
    depth = torch.rand(*SHAPE, generator=gen)
    context = torch.randn(SHAPE[0], SHAPE[1], CHANNELS, SHAPE[3], SHAPE[4], generator=gen)
    upstream = torch.randn(SHAPE[0], CHANNELS, *GRID.shape, generator=gen)
    return points, depth, context, upstream


def test_planted_points_are_dropped_or_kept_by_floor(inputs):
    points = inputs[0]
    _, valid = voxel_index(points, GRID)
    flat = valid.view(-1)
    assert not flat[0] and not flat[1] and not flat[2]  # truncation would keep them
    assert flat[3]  # the lower corner is inside
    assert not flat[4]  # the upper face is outside
    assert 0 < int(flat.sum()) < flat.numel()


def test_voxel_index_matches_grid_point_to_index(inputs):
    points = inputs[0]
    index, valid = voxel_index(points, GRID)
    cells, expected_valid = GRID.point_to_index(points[0].reshape(-1, 3).double().numpy())
    np.testing.assert_array_equal(valid[0].reshape(-1).numpy(), expected_valid)
    size_x, size_y, size_z = GRID.shape
    flat = (cells[:, 0] * size_y + cells[:, 1]) * size_z + cells[:, 2]
    np.testing.assert_array_equal(
        index[0].reshape(-1).numpy()[expected_valid], flat[expected_valid]
    )
    # The second batch element is offset by one full volume.
    assert int(index[1].reshape(-1)[valid[1].reshape(-1)].min()) >= size_x * size_y * size_z


@pytest.mark.parametrize("variant", ["splat", "cumsum_reference"])
def test_feature_splat_matches_brute_force(inputs, variant):
    points, _, _, upstream = inputs
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(*SHAPE, CHANNELS, generator=gen, requires_grad=True)
    op = splat if variant == "splat" else splat_cumsum_reference
    volume = op(features, points, GRID)
    expected = _brute_splat(features.detach().numpy(), points.numpy())
    assert volume.shape == (SHAPE[0], CHANNELS, *GRID.shape)
    assert volume.is_contiguous(memory_format=torch.channels_last_3d)
    np.testing.assert_allclose(volume.detach().numpy(), expected, atol=1e-5)

    (volume * upstream).sum().backward()
    expected_grad = np.zeros((*SHAPE, CHANNELS))
    for b, n, d, i, j in _all_cells():
        voxel = _brute_voxel(points[b, n, d, i, j])
        if voxel is not None:
            expected_grad[b, n, d, i, j] = upstream[(b, slice(None), *voxel)].numpy()
    np.testing.assert_allclose(features.grad.numpy(), expected_grad, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 17])
@pytest.mark.parametrize("planned", [False, True])
def test_depth_context_splat_matches_brute_force(inputs, chunk_size, planned):
    points, depth, context, upstream = inputs
    depth = depth.clone().requires_grad_(True)
    context = context.clone().requires_grad_(True)
    if planned:
        volume = splat_planned(depth, context, plan_splat(points, GRID), chunk_size)
    else:
        volume = splat_depth_context(depth, context, points, GRID, chunk_size)

    d_np, c_np, g_np = depth.detach().numpy(), context.detach().numpy(), upstream.numpy()
    expected = np.zeros((SHAPE[0], CHANNELS, *GRID.shape))
    expected_depth_grad = np.zeros(SHAPE)
    expected_context_grad = np.zeros(c_np.shape)
    for b, n, d, i, j in _all_cells():
        voxel = _brute_voxel(points[b, n, d, i, j])
        if voxel is None:
            continue
        index = (b, slice(None), *voxel)
        expected[index] += d_np[b, n, d, i, j] * c_np[b, n, :, i, j]
        expected_depth_grad[b, n, d, i, j] = np.dot(g_np[index], c_np[b, n, :, i, j])
        expected_context_grad[b, n, :, i, j] += d_np[b, n, d, i, j] * g_np[index]
    np.testing.assert_allclose(volume.detach().numpy(), expected, atol=1e-5)

    (volume * upstream).sum().backward()
    np.testing.assert_allclose(depth.grad.numpy(), expected_depth_grad, atol=1e-5)
    np.testing.assert_allclose(context.grad.numpy(), expected_context_grad, atol=1e-5)


def test_variants_agree(inputs):
    points, depth, context, _ = inputs
    features = depth.unsqueeze(-1) * context.permute(0, 1, 3, 4, 2).unsqueeze(2)
    lean = splat_depth_context(depth, context, points, GRID)
    torch.testing.assert_close(splat(features, points, GRID), lean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(splat_cumsum_reference(features, points, GRID), lean)


def test_half_precision_inputs_accumulate_in_float32():
    # 600 points in one voxel: in bfloat16, 256 + 1 rounds back to 256 and the sum stalls.
    shape = (1, 1, 600, 1, 1)
    points = torch.zeros(*shape, 3)
    depth = torch.ones(shape, dtype=torch.bfloat16)
    context = torch.ones(1, 1, 1, 1, 1, dtype=torch.bfloat16)
    features = torch.ones(*shape, 1, dtype=torch.bfloat16)
    for volume in (
        splat(features, points, GRID),
        splat_depth_context(depth, context, points, GRID),
    ):
        assert volume.dtype == torch.float32
        assert float(volume.sum()) == 600.0


def test_mismatched_shapes_are_rejected(inputs):
    points, depth, context, _ = inputs
    with pytest.raises(ValueError, match="points"):
        splat(torch.zeros(*SHAPE, CHANNELS), points[..., :2], GRID)
    plan = plan_splat(points, GRID)
    with pytest.raises(ValueError, match="depth"):
        splat_planned(depth[:, :, :2], context, plan)
    with pytest.raises(ValueError, match="context"):
        splat_planned(depth, context[..., :2], plan)
