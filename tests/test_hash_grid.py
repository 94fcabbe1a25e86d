"""The hash encoding and the fused-layout MLP against hand-computed values and brute force."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from renderlss.models.fused_mlp import (
    FusedMLPLayout,
    fused_mlp_forward,
    fused_mlp_matrices,
)
from renderlss.models.hash_grid import HashGridEncoding, HashGridLayout, hash_grid_encode


def test_level_resolutions_sizes_and_the_dense_to_hash_switch():
    # N_min 16, b 2: scale = 16 * 2^l - 1 = 15, 31, 63, 127; resolution = scale + 1.
    layout = HashGridLayout(
        levels=4, log2_table_size=15, features_per_level=2, base_resolution=16, per_level_scale=2.0
    )
    assert [layout.scale(level) for level in range(4)] == [15.0, 31.0, 63.0, 127.0]
    assert [layout.resolution(level) for level in range(4)] == [16, 32, 64, 128]
    # 16^3 = 4096 and 32^3 = 2^15 = T fit densely; 64^3 and 128^3 are hashed into T.
    assert [layout.entries(level) for level in range(4)] == [4096, 32768, 32768, 32768]
    assert [layout.hashed(level) for level in range(4)] == [False, False, True, True]
    assert layout.offsets() == [0, 4096, 36864, 69632, 102400]
    assert layout.num_params == 2 * 102400
    # A fractional scale rounds up: 3 * 1.5 - 1 = 3.5 -> 5 points; 5^3 = 125 -> 128 entries.
    fractional = HashGridLayout(2, 10, 1, 3, 1.5)
    assert fractional.resolution(1) == 5 and fractional.entries(1) == 128
    assert not fractional.hashed(1)


def _reference_hash(x: int, y: int, z: int) -> int:
    return ((x * 1) ^ (y * 2654435761) ^ (z * 805459861)) % 2**32


def test_a_hand_computed_position_on_a_dense_and_a_hashed_level():
    # Level 0: scale 1, 2 points per axis, 8 entries (dense). Level 1: scale 5, 6 points
    # per axis, 216 > 64 = T entries: hashed.
    layout = HashGridLayout(2, 6, 1, 2, 3.0)
    assert [layout.resolution(level) for level in range(2)] == [2, 6]
    assert [layout.hashed(level) for level in range(2)] == [False, True]
    table = torch.arange(layout.num_params, dtype=torch.float64) ** 1.5  # distinct values
    position = torch.tensor([[0.25, 0.5, 0.75]])
    encoded = hash_grid_encode(position, table, layout)[0]

    # Level 0: grid position x * 1 + 0.5 = (0.75, 1.0, 1.25): cell (0, 1, 1), fractions
    # (0.75, 0, 0.25); index x + 2 y + 4 z mod 8 (the corner at y = 2 wraps around).
    expected0 = 0.0
    for ox, oy, oz in itertools.product((0, 1), repeat=3):
        weight = (0.75 if ox else 0.25) * (0.0 if oy else 1.0) * (0.25 if oz else 0.75)
        expected0 += weight * float(table[(ox + 2 * (1 + oy) + 4 * (1 + oz)) % 8])
    # Level 1: x * 5 + 0.5 = (1.75, 3.0, 4.25): cell (1, 3, 4), the same fractions; hashed
    # into 64 entries after the 8 of level 0.
    expected1 = 0.0
    for ox, oy, oz in itertools.product((0, 1), repeat=3):
        weight = (0.75 if ox else 0.25) * (0.0 if oy else 1.0) * (0.25 if oz else 0.75)
        expected1 += weight * float(table[8 + _reference_hash(1 + ox, 3 + oy, 4 + oz) % 64])
    assert encoded.tolist() == pytest.approx([expected0, expected1], rel=1e-12)


def _brute_force_encode(positions: torch.Tensor, table: torch.Tensor, layout: HashGridLayout):
    """One position, level and corner at a time, with Python integers."""
    f = layout.features_per_level
    offsets = layout.offsets()
    out = torch.zeros(len(positions), layout.output_dims, dtype=table.dtype)
    for p, position in enumerate(positions.tolist()):
        for level in range(layout.levels):
            scale, res, size = layout.scale(level), layout.resolution(level), layout.entries(level)
            grid = [torch.tensor(c, dtype=torch.float32) * scale + 0.5 for c in position]
            cell = [int(torch.floor(g)) for g in grid]
            frac = [float(g - torch.floor(g)) for g in grid]
            for offset in itertools.product((0, 1), repeat=3):
                point = [c + o for c, o in zip(cell, offset, strict=True)]
                weight = 1.0
                for o, t in zip(offset, frac, strict=True):
                    weight *= t if o else 1.0 - t
                if res**3 > size:
                    index = _reference_hash(*point) % size
                else:
                    index = (point[0] + res * point[1] + res * res * point[2]) % size
                start = (offsets[level] + index) * f
                out[p, level * f : (level + 1) * f] += weight * table[start : start + f]
    return out


def test_random_positions_match_brute_force():
    layout = HashGridLayout(3, 8, 2, 4, 2.0)  # 4 (dense), 8 and 16 (hashed) points per axis
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(layout.num_params, generator=generator, dtype=torch.float64)
    positions = torch.rand(40, 3, generator=generator)
    positions[0] = torch.tensor([0.0, 1.0, 0.5])  # the faces of the cube
    expected = _brute_force_encode(positions, table, layout)
    assert torch.allclose(hash_grid_encode(positions, table, layout), expected, atol=1e-12)


def test_gradients_against_finite_differences():
    layout = HashGridLayout(2, 5, 2, 3, 2.0)
    module = HashGridEncoding(layout)
    assert module.params.shape == (layout.num_params,)
    assert module.params.abs().max() <= 1e-4  # tcnn's initialisation range
    positions = torch.rand(12, 3, generator=torch.Generator().manual_seed(1))
    table = torch.randn(layout.num_params, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: hash_grid_encode(positions, t, layout), (table,))


def test_fused_mlp_layout_is_a_bias_free_linear_stack():
    layout = FusedMLPLayout(input_dims=37, output_dims=19, width=64, hidden_layers=2)
    # tcnn pads the input to 48 and the output to 32 columns / rows.
    assert layout.matrix_shapes() == [(64, 48), (64, 64), (32, 64)]
    assert layout.num_params == 64 * 48 + 64 * 64 + 32 * 64
    params = torch.randn(layout.num_params, dtype=torch.float64)
    first, hidden, last = fused_mlp_matrices(params, layout)
    # The documented conversion: row-major [out, in] views, padding cut off.
    assert torch.equal(first, params[: 64 * 48].view(64, 48))
    linears = [
        nn.Linear(n_in, n_out, bias=False, dtype=torch.float64)
        for n_in, n_out in ((37, 64), (64, 64), (64, 19))
    ]
    with torch.no_grad():
        for linear, weight in zip(linears, (first[:, :37], hidden, last[:19]), strict=True):
            linear.weight.copy_(weight)
    reference = nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2])
    inputs = torch.randn(10, 37, dtype=torch.float64)
    assert torch.allclose(fused_mlp_forward(inputs, params, layout), reference(inputs))
    small = FusedMLPLayout(3, 2, 16, 1)
    weights = torch.randn(small.num_params, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w: fused_mlp_forward(x, w, small), (weights,))
