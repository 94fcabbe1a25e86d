"""Multiresolution hash encoding of 3D positions (Instant-NGP), in PyTorch.

L levels; level l is a grid of ``resolution_l`` points per axis over the unit cube whose
corner values are F learned features. A position's encoding concatenates, level by level,
the trilinear interpolation of the 8 grid points around it: [P, 3] -> [P, L * F].

Everything follows tiny-cuda-nn's ``HashGrid`` (``include/tiny-cuda-nn/encodings/grid.h``)
so that the two compute the same values from the same parameters:

- ``scale_l = 2^(l log2 b) N_min - 1`` (float32), ``resolution_l = ceil(scale_l) + 1``;
  a position x in [0, 1] sits at ``x scale_l + 0.5`` grid units (so the grid points
  straddle the cube by half a cell on each side).
- Level l holds ``min(next_multiple(resolution_l^3, 8), T)`` entries. A level whose dense
  grid needs more than that (``resolution_l^3 > entries``) is hashed,
  ``(x * 1 ^ y * 2654435761 ^ z * 805459861) mod 2^32 mod entries``; the others are indexed
  densely, ``(x + y * resolution + z * resolution^2) mod entries``.
- All levels live in one flat parameter, levels concatenated, F consecutive values per
  entry; output feature ``l * F + f`` is feature f of level l. Initialised uniformly in
  [-1e-4, 1e-4].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

# Per-axis factors of the spatial hash (tiny-cuda-nn's "CoherentPrime"): 1 on x keeps
# neighbouring x in neighbouring entries.
HASH_PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class HashGridLayout:
    """Sizes of a hash encoding: ``levels`` L, ``log2_table_size`` log2 T,
    ``features_per_level`` F, ``base_resolution`` N_min, ``per_level_scale`` b."""

    levels: int
    log2_table_size: int
    features_per_level: int
    base_resolution: int
    per_level_scale: float

    @property
    def output_dims(self) -> int:
        return self.levels * self.features_per_level

    def scale(self, level: int) -> float:
        """``x scale + 0.5`` is the grid position of x in [0, 1], in float32 as tcnn."""
        log2_b = np.log2(np.float32(self.per_level_scale))
        step = np.exp2(np.float32(level) * log2_b, dtype=np.float32)
        return float(step * np.float32(self.base_resolution) - np.float32(1.0))

    def resolution(self, level: int) -> int:
        """Grid points per axis of ``level``."""
        return math.ceil(self.scale(level)) + 1

    def entries(self, level: int) -> int:
        """Table entries of ``level``: the dense grid (a multiple of 8), at most T."""
        dense = -(-(self.resolution(level) ** 3) // 8) * 8
        return min(dense, 1 << self.log2_table_size)

    def hashed(self, level: int) -> bool:
        """Whether ``level``'s dense grid does not fit its table, so it is hashed."""
        return self.resolution(level) ** 3 > self.entries(level)

    def offsets(self) -> list[int]:
        """[L + 1] first entry of each level in the flat table, then the total."""
        out = [0]
        for level in range(self.levels):
            out.append(out[-1] + self.entries(level))
        return out

    @property
    def num_params(self) -> int:
        return self.offsets()[-1] * self.features_per_level

    def tcnn_config(self) -> dict:
        """tiny-cuda-nn's encoding config of the same encoding."""
        return {
            "otype": "HashGrid",
            "n_levels": self.levels,
            "n_features_per_level": self.features_per_level,
            "log2_hashmap_size": self.log2_table_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": "Linear",
            "hash": "CoherentPrime",
        }


def level_cells(positions: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """The grid cell around each position of a level and the position inside it.

    Args:
        positions: [P, 3] (x, y, z) in [0, 1]; computed in float32 as tcnn does, so that
            both find the same cells.
    Returns:
        lower [P, 3] int64 grid point at the cell's lower corner, fraction [P, 3] in [0, 1).
    """
    grid_position = positions.float() * scale + 0.5
    lower = torch.floor(grid_position)
    return lower.long(), grid_position - lower


def corner_weights(fraction: Tensor) -> Tensor:
    """Trilinear weights [P, 8] of the cell corners from fractions [P, 3]; corner
    ``4 ox + 2 oy + oz`` is the one offset by (ox, oy, oz) in {0, 1}^3."""
    w = torch.stack([1.0 - fraction, fraction], dim=-1)  # [P, 3, 2]
    weights = w[:, 0, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :]
    return weights.reshape(-1, 8)


def corner_indices(lower: Tensor, resolution: int, entries: int, hashed: bool) -> Tensor:
    """Table entries [P, 8] of the cell corners (order of ``corner_weights``) of one level.

    Dense levels index ``x + resolution (y + resolution z)``, hashed ones
    ``x * 1 ^ y * 2654435761 ^ z * 805459861``; both modulo ``entries``.

    Args:
        lower: [P, 3] int64 lower corners (x, y, z) >= 0.
    """
    axis = lower.unsqueeze(-1) + torch.arange(2, device=lower.device)  # [P, 3, 2]
    if hashed:
        primes = torch.tensor(HASH_PRIMES, device=lower.device).view(3, 1)
        x, y, z = (axis * primes).unbind(1)
        # tcnn multiplies in uint32; a hashed level has T = 2^k entries, k <= 30, which
        # divides 2^32, so the wrap-around does not change the index modulo T.
        index = x[:, :, None, None] ^ y[:, None, :, None] ^ z[:, None, None, :]
    else:
        x, y, z = axis.unbind(1)
        index = x[:, :, None, None] + resolution * (
            y[:, None, :, None] + resolution * z[:, None, None, :]
        )
    return index.reshape(-1, 8) % entries


def hash_grid_encode(positions: Tensor, table: Tensor, layout: HashGridLayout) -> Tensor:
    """Encode positions with a flat table of ``layout.num_params`` values.

    Args:
        positions: [P, 3] (x, y, z) in [0, 1], no gradient.
        table: [num_params] (levels concatenated, ``features_per_level`` values per entry).
    Returns:
        [P, L * F] in ``table``'s dtype, level-major.
    """
    if table.numel() != layout.num_params:
        raise ValueError(
            f"hash_grid_encode: table has {table.numel()} values, the layout needs "
            f"{layout.num_params}"
        )
    features = layout.features_per_level
    offsets = layout.offsets()
    encoded = []
    for level in range(layout.levels):
        entries = layout.entries(level)
        level_table = table[offsets[level] * features : offsets[level + 1] * features]
        lower, fraction = level_cells(positions, layout.scale(level))
        index = corner_indices(lower, layout.resolution(level), entries, layout.hashed(level))
        # index_select: its backward is an index_add, much faster on CPU than indexing's.
        values = level_table.view(entries, features).index_select(0, index.flatten())
        weights = corner_weights(fraction).to(values.dtype)
        encoded.append(torch.einsum("pc,pcf->pf", weights, values.view(-1, 8, features)))
    return torch.cat(encoded, dim=-1)


class HashGridEncoding(nn.Module):
    """The encoding with its flat table as one parameter ``params`` (tcnn's layout).

    Args:
        layout: level count and sizes.
    """

    def __init__(self, layout: HashGridLayout) -> None:
        super().__init__()
        self.layout = layout
        self.params = nn.Parameter(torch.empty(layout.num_params).uniform_(-1e-4, 1e-4))

    def forward(self, positions: Tensor) -> Tensor:
        """[P, 3] in [0, 1] -> [P, L * F]."""
        return hash_grid_encode(positions, self.params, self.layout)
