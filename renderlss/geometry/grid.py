"""The voxel grid: an axis-aligned box in the (key-)ego frame cut into equal voxels.

Voxel ``[i, j, k]`` covers ``lower + [i, j, k] * voxel_size`` to ``+ voxel_size``; a point
belongs to the voxel ``floor((p - lower) / voxel_size)`` and is outside the grid when any
index falls outside ``[0, shape)`` (floor, not truncation: -0.3 m below ``lower`` is
outside, not in voxel 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoxelGrid:
    """Grid extent ``point_cloud_range = (x0, y0, z0, x1, y1, z1)`` and ``voxel_size`` per axis."""

    point_cloud_range: tuple[float, float, float, float, float, float] = (
        -40.0,
        -40.0,
        -1.0,
        40.0,
        40.0,
        5.4,
    )
    voxel_size: tuple[float, float, float] = (0.4, 0.4, 0.4)

    def validate(self, where: str) -> None:
        lo, hi = np.array(self.point_cloud_range[:3]), np.array(self.point_cloud_range[3:])
        size = np.array(self.voxel_size)
        if np.any(hi <= lo) or np.any(size <= 0):
            raise ValueError(f"{where}: empty range {self.point_cloud_range} or voxel size {size}")
        cells = (hi - lo) / size
        if np.any(np.abs(cells - np.round(cells)) > 1e-6):
            raise ValueError(
                f"{where}: range {self.point_cloud_range} is not a whole number of voxels "
                f"of size {self.voxel_size} (got {cells.tolist()})"
            )

    @property
    def lower(self) -> np.ndarray:
        """[3] lower corner."""
        return np.asarray(self.point_cloud_range[:3], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """[3] upper corner."""
        return np.asarray(self.point_cloud_range[3:], dtype=np.float64)

    @property
    def size(self) -> np.ndarray:
        """[3] voxel edge lengths."""
        return np.asarray(self.voxel_size, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(X, Y, Z) number of voxels per axis."""
        cells = np.round((self.upper - self.lower) / self.size).astype(int)
        return int(cells[0]), int(cells[1]), int(cells[2])

    def point_to_index(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices of points.

        Args:
            points: [N, 3] in the grid's frame.
        Returns:
            index: [N, 3] int64 voxel indices (by floor); valid: [N] bool, inside the grid.
        """
        idx = np.floor((np.asarray(points, dtype=np.float64) - self.lower) / self.size)
        idx = idx.astype(np.int64)
        valid = np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=1)
        return idx, valid

    def voxel_centers(self) -> np.ndarray:
        """[X, Y, Z, 3] voxel centre coordinates."""
        axes = [
            self.lower[a] + (np.arange(n) + 0.5) * self.size[a] for a, n in enumerate(self.shape)
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
