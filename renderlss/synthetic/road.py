"""The road a scene is built along: a circular arc (or a straight line) in the global frame,
with road coordinates ``(s, d)``: arc length along the centreline and signed lateral offset
(positive to the left of the driving direction). Every object and ground region of the world
is placed in road coordinates, so a gently curving road bends the whole street."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Below this curvature (1/m) the road is a straight line (radius beyond 1000 km).
STRAIGHT_CURVATURE = 1e-6


@dataclass(frozen=True)
class Road:
    """Centreline starting at global ``origin`` [2] with ``heading`` (radians) and constant
    ``curvature`` (1/m, positive turns left)."""

    origin: tuple[float, float]
    heading: float
    curvature: float

    def _local_to_global(self, xy: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.heading), np.sin(self.heading)
        rot = np.array([[c, -s], [s, c]])
        return xy @ rot.T + np.asarray(self.origin)

    def _global_to_local(self, xy: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.heading), np.sin(self.heading)
        rot = np.array([[c, -s], [s, c]])
        return (np.asarray(xy, dtype=np.float64) - np.asarray(self.origin)) @ rot

    def to_global(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates -> global.

        Args:
            s: [N] arc length; d: [N] lateral offset.
        Returns:
            xy: [N, 2] global position; heading: [N] road direction there (radians).
        """
        s, d = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(d, np.float64))
        k = self.curvature
        if abs(k) < STRAIGHT_CURVATURE:
            local = np.stack([s, d], axis=-1)
            angle = np.zeros_like(s)
        else:
            angle = k * s
            centre = np.stack([np.sin(angle) / k, (1.0 - np.cos(angle)) / k], axis=-1)
            normal = np.stack([-np.sin(angle), np.cos(angle)], axis=-1)
            local = centre + d[..., None] * normal
        return self._local_to_global(local), angle + self.heading

    def from_global(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global [N, 2] -> road coordinates ``(s [N], d [N])`` (exact inverse of
        :meth:`to_global` for points closer to the centreline than the curve radius)."""
        local = self._global_to_local(xy)
        k = self.curvature
        if abs(k) < STRAIGHT_CURVATURE:
            return local[..., 0], local[..., 1]
        sign = np.sign(k)
        r = local - np.array([0.0, 1.0 / k])
        rho = np.hypot(r[..., 0], r[..., 1])
        angle = np.arctan2(sign * r[..., 0], -sign * r[..., 1])
        return angle / k, 1.0 / k - sign * rho
