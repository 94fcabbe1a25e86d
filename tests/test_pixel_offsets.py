"""Pixel-region offsets: bilinear cell sampling against a per-cell loop, exact identity at zero
offsets, gradients, and the zero-initialised bounded head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from renderlss.models.pixel_offsets import PixelOffsetHead, sample_cells


def _brute_bilinear(values: np.ndarray, x: float, y: float) -> np.ndarray:
    """values [C, h, w] at continuous cell position (x, y), positions clamped to the grid."""
    _, rows, cols = values.shape
    x, y = min(max(x, 0.0), cols - 1.0), min(max(y, 0.0), rows - 1.0)
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = min(x0 + 1, cols - 1), min(y0 + 1, rows - 1)
    fx, fy = x - x0, y - y0
    top = (1 - fx) * values[:, y0, x0] + fx * values[:, y0, x1]
    bottom = (1 - fx) * values[:, y1, x0] + fx * values[:, y1, x1]
    return (1 - fy) * top + fy * bottom


def test_sampling_matches_a_per_cell_bilinear_loop():
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    # Offsets up to 2 cells: many positions fall outside the grid and read its border.
    offsets = 4.0 * torch.rand(2, 4, 5, 2, generator=gen, dtype=torch.float64) - 2.0
    sampled = sample_cells(values, offsets)
    for m in range(2):
        for i in range(4):
            for j in range(5):
                dx, dy = offsets[m, i, j].tolist()
                expected = _brute_bilinear(values[m].numpy(), j + dx, i + dy)
                np.testing.assert_allclose(sampled[m, :, i, j].numpy(), expected, atol=1e-12)


def test_zero_offsets_read_every_cell_exactly():
    values = torch.randn(3, 6, 4, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sample_cells(values, torch.zeros(3, 4, 7, 2)), values)
    half = values.bfloat16()
    assert torch.equal(sample_cells(half, torch.zeros(3, 4, 7, 2)), half)


def test_whole_cell_offsets_shift_the_grid():
    values = torch.arange(12.0).view(1, 1, 3, 4)
    offsets = torch.zeros(1, 3, 4, 2)
    offsets[..., 0] = 1.0  # one cell to the right; the last column reads itself
    expected = torch.tensor([[1.0, 2.0, 3.0, 3.0], [5.0, 6.0, 7.0, 7.0], [9.0, 10.0, 11.0, 11.0]])
    assert torch.equal(sample_cells(values, offsets)[0, 0], expected)


def test_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(2)
    values = torch.randn(1, 2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    # Away from whole cells, where the bilinear weights are smooth.
    offsets = 0.1 + 0.8 * torch.rand(1, 3, 4, 2, generator=gen, dtype=torch.float64)
    offsets = (offsets * torch.tensor([1.0, -1.0], dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(sample_cells, (values, offsets))


def test_head_starts_at_zero_and_stays_in_range():
    head = PixelOffsetHead(in_channels=5, offset_range=1.5)
    features = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(3))
    offsets = head(features)
    assert offsets.shape == (2, 3, 4, 2) and torch.equal(offsets, torch.zeros(2, 3, 4, 2))
    # It still learns: the first gradient reaches its weights.
    offsets.sum().backward()
    assert float(head.offset_out.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        head.offset_out.weight.fill_(100.0)
        large = head(features)
    assert float(large.abs().max()) <= 1.5 and float(large.abs().max()) > 1.4


def test_malformed_offsets_are_rejected():
    with pytest.raises(ValueError, match="offsets"):
        sample_cells(torch.zeros(1, 2, 3, 4), torch.zeros(1, 4, 3, 2))
