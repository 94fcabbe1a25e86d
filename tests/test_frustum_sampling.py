"""Depth-guided (PDF) frustum sampling against hand-built distributions, a fine numerical CDF
and a per-point splat loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.models.config import DepthBinsConfig
from renderlss.models.depth_bins import bin_edges
from renderlss.models.frustum_sampling import (
    importance_weights,
    inverse_cdf,
    pdf_samples,
    sample_fractions,
)
from renderlss.ops.frustum import frustum_points
from renderlss.ops.splat import splat_depth_context

UD = DepthBinsConfig(mode="UD", d_min=1.0, d_max=9.0, num_bins=8)  # 1 m bins
LID = DepthBinsConfig(mode="LID", d_min=1.0, d_max=45.0, num_bins=10)


def _cells(masses) -> torch.Tensor:
    """One cell [1, D, 1, 1] holding the distribution ``masses``."""
    return torch.tensor(masses, dtype=torch.float32).view(1, -1, 1, 1)


def _numerical_quantiles(masses: np.ndarray, edges: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Quantiles of the piecewise-constant density from its CDF tabulated every 0.1 mm."""
    depth = np.arange(edges[0], edges[-1], 1e-4)
    bin_of = np.clip(np.searchsorted(edges, depth, side="right") - 1, 0, len(masses) - 1)
    density = masses[bin_of] / np.diff(edges)[bin_of]
    cdf = np.concatenate([[0.0], np.cumsum(density[:-1] * np.diff(depth))])
    cdf /= cdf[-1]
    return np.interp(u, cdf, depth)


def test_evenly_spaced_and_stratified_fractions():
    even = sample_fractions((2,), 4, stratified=False)
    torch.testing.assert_close(even, torch.tensor([[0.125, 0.375, 0.625, 0.875]] * 2))
    strata = sample_fractions(
        (500,), 4, stratified=True, generator=torch.Generator().manual_seed(0)
    )
    index = torch.arange(4)
    assert bool(((strata >= index / 4) & (strata < (index + 1) / 4)).all())
    # Really random: every stratum is sampled over most of its width.
    assert float((strata - index / 4).amin()) < 0.01 and float((strata - index / 4).amax()) > 0.24


@pytest.mark.parametrize("stratified", [False, True])
def test_delta_at_one_bin_puts_every_sample_in_its_interval(stratified):
    masses = [0.0] * 8
    masses[5] = 1.0  # bin 5 covers [6, 7) m
    depths, weights = pdf_samples(
        _cells(masses),
        bin_edges(UD),
        6,
        stratified,
        generator=torch.Generator().manual_seed(1),
    )
    assert depths.shape == (1, 6, 1, 1)
    samples = depths.flatten()
    assert bool(((samples >= 6.0) & (samples <= 7.0)).all())
    if not stratified:
        # Evenly spread over the bin, not piled at its centre.
        torch.testing.assert_close(samples, 6.0 + (torch.arange(6) + 0.5) / 6)
    assert torch.equal(weights.flatten(), torch.full((6,), 1.0 / 6))


def test_uniform_density_gives_evenly_spaced_depths():
    # Mass proportional to the (growing) LID widths is uniform in depth over [1, 45] m.
    edges = bin_edges(LID, dtype=torch.float64)
    masses = (edges[1:] - edges[:-1]) / (edges[-1] - edges[0])
    depths, _ = pdf_samples(_cells(masses.tolist()), edges.float(), 11, stratified=False)
    expected = 1.0 + 44.0 * (torch.arange(11) + 0.5) / 11
    torch.testing.assert_close(depths.flatten(), expected, atol=1e-4, rtol=0)


def test_quantiles_match_a_fine_numerical_cdf():
    rng = np.random.default_rng(3)
    masses = rng.uniform(0.0, 1.0, size=LID.num_bins) ** 3
    masses[[2, 6]] = 0.0  # empty bins in between
    masses /= masses.sum()
    edges = bin_edges(LID, dtype=torch.float64)
    u = torch.from_numpy(rng.uniform(0.0, 1.0, size=400)).float()
    depths, bins = inverse_cdf(torch.tensor(masses, dtype=torch.float32), edges.float(), u)
    expected = _numerical_quantiles(masses, edges.numpy(), u.double().numpy())
    np.testing.assert_allclose(depths.numpy(), expected, atol=2e-3)
    # Each depth lies in the bin returned with it, and no sample lands in an empty bin.
    e = edges.float()
    assert bool(((depths >= e[bins]) & (depths <= e[bins + 1])).all())
    assert not bool(np.isin(bins.numpy(), [2, 6]).any())


def test_stratified_samples_stay_within_their_quantile_intervals():
    masses = np.array([0.05, 0.0, 0.4, 0.3, 0.0, 0.0, 0.2, 0.05])
    edges = bin_edges(UD, dtype=torch.float64).numpy()
    cells = _cells(masses.tolist()).expand(1, 8, 20, 30)  # 600 cells, one draw each
    gen = torch.Generator().manual_seed(2)
    depths, _ = pdf_samples(cells, torch.from_numpy(edges).float(), 5, True, gen)
    samples = depths.movedim(1, -1).reshape(-1, 5).double().numpy()
    bounds = _numerical_quantiles(masses, edges, np.arange(6) / 5)
    for s in range(5):
        assert (samples[:, s] >= bounds[s] - 1e-4).all() and (
            samples[:, s] <= bounds[s + 1] + 1e-4
        ).all()
    # The draws fill each interval rather than sitting at one point.
    assert (samples.max(axis=0) - samples.min(axis=0) > 0.9 * np.diff(bounds)).all()
    assert (np.diff(samples, axis=1) >= 0).all()


def test_importance_weights_give_the_bins_gradient():
    # Masses in multiples of 1/8 with 8 evenly spaced samples: bin k draws exactly 8 p_k of
    # them, so with an upstream gradient g_k constant over each bin the gradient of the
    # lifted mass sum_s w_s g(s) equals the regular lift's sum_k p_k g_k gradient, g_k,
    # in every bin that has mass.
    masses = torch.tensor([0.25, 0.5, 0.0, 0.25], requires_grad=True)
    edges = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    _, bins = inverse_cdf(masses.detach(), edges, sample_fractions((), 8, stratified=False))
    assert bins.tolist() == [0, 0, 1, 1, 1, 1, 3, 3]
    weights = importance_weights(masses, bins)
    assert torch.equal(weights, torch.full((8,), 0.125))
    upstream = torch.tensor([3.0, -1.0, 7.0, 2.0])
    (weights * upstream[bins]).sum().backward()
    torch.testing.assert_close(masses.grad, torch.tensor([3.0, -1.0, 0.0, 2.0]))


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="edges"):
        pdf_samples(_cells([0.5, 0.5]), torch.tensor([1.0, 2.0]), 4, False)
    with pytest.raises(ValueError, match="num_samples"):
        pdf_samples(_cells([0.5, 0.5]), torch.tensor([1.0, 2.0, 3.0]), 0, False)


# Front camera looking along ego x: camera z -> ego x, camera x -> ego -y, camera y -> ego -z.
FRONT = torch.tensor(
    [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
    dtype=torch.float64,
)
K = torch.tensor([[8.0, 0.0, 8.0], [0.0, 8.0, 6.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
GRID = VoxelGrid(point_cloud_range=(0.0, -4.0, -3.0, 8.0, 4.0, 3.0), voxel_size=(0.5, 0.5, 0.5))


def _brute_voxel(point) -> tuple[int, int, int] | None:
    cell = []
    for axis in range(3):
        coord = (float(point[axis]) - GRID.point_cloud_range[axis]) / GRID.voxel_size[axis]
        if not 0 <= math.floor(coord) < GRID.shape[axis]:
            return None
        cell.append(math.floor(coord))
    return tuple(cell)


def test_splat_of_per_cell_sample_depths_matches_a_per_point_loop():
    # Two cameras (B=1, N=2) of 3 x 4 cells at stride 4, each cell with its own distribution
    # over 8 bins of [1, 9] m and 5 stratified samples: an irregular frustum.
    gen = torch.Generator().manual_seed(4)
    cameras, rows, cols, samples, channels = 2, 3, 4, 5, 3
    logits = 3.0 * torch.randn(cameras, UD.num_bins, rows, cols, generator=gen)
    depths, weights = pdf_samples(logits.softmax(dim=1), bin_edges(UD), samples, True, gen)
    cam2ego = FRONT.expand(1, cameras, 4, 4).clone()
    cam2ego[0, 1, :3, 3] = torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64)
    img_aug = torch.eye(3, dtype=torch.float64).expand(1, cameras, 3, 3)
    intrinsics = K.expand(1, cameras, 3, 3)
    points = frustum_points(depths[None], (rows, cols), 4, img_aug, intrinsics, cam2ego)
    assert points.shape == (1, cameras, samples, rows, cols, 3)
    weights = weights[None].detach().requires_grad_(True)
    context = torch.randn(1, cameras, channels, rows, cols, generator=gen, requires_grad=True)
    volume = splat_depth_context(weights, context, points, GRID)
    upstream = torch.randn(volume.shape, generator=gen)
    (volume * upstream).sum().backward()

    w, c, g = weights.detach().numpy(), context.detach().numpy(), upstream.numpy()
    expected = np.zeros(volume.shape)
    weight_grad, context_grad = np.zeros(w.shape), np.zeros(c.shape)
    kept = 0
    for n in range(cameras):
        for s in range(samples):
            for i in range(rows):
                for j in range(cols):
                    # The point's camera z is its sample depth.
                    cam = torch.linalg.solve(
                        cam2ego[0, n],
                        torch.cat(
                            [points[0, n, s, i, j].double(), torch.ones(1, dtype=torch.float64)]
                        ),
                    )
                    assert abs(float(cam[2]) - float(depths[n, s, i, j])) < 1e-4
                    voxel = _brute_voxel(points[0, n, s, i, j])
                    if voxel is None:
                        continue
                    kept += 1
                    index = (0, slice(None), *voxel)
                    expected[index] += w[0, n, s, i, j] * c[0, n, :, i, j]
                    weight_grad[0, n, s, i, j] = np.dot(g[index], c[0, n, :, i, j])
                    context_grad[0, n, :, i, j] += w[0, n, s, i, j] * g[index]
    assert 0 < kept < cameras * samples * rows * cols
    np.testing.assert_allclose(volume.detach().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(weights.grad.numpy(), weight_grad, atol=1e-5)
    np.testing.assert_allclose(context.grad.numpy(), context_grad, atol=1e-5)
