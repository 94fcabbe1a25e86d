"""Sparse per-pixel supervision of one camera image: what every target source produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PixelTargets:
    """Targets at M pixels of one camera image (original, un-augmented image coordinates).

    Attributes:
        uv: [M, 2] float64 image coordinates of the pixel centres (column, row).
        depth: [M] float32 camera-z depth in metres; 0 where the source has no depth.
        semantics: [M] uint8 Occ3D class; the ignore index where the source has no class.
        confidence: [M] float32 in [0, 1]; losses multiply by it (1 for measured values).
    """

    uv: np.ndarray
    depth: np.ndarray
    semantics: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.depth)

    def select(self, keep: np.ndarray) -> PixelTargets:
        """The targets at a boolean mask or index array ``keep``."""
        return PixelTargets(
            self.uv[keep], self.depth[keep], self.semantics[keep], self.confidence[keep]
        )

    @staticmethod
    def concatenate(parts: list[PixelTargets]) -> PixelTargets:
        """All targets of ``parts`` (e.g. of several sources) in one set."""
        return PixelTargets(
            np.concatenate([p.uv for p in parts]).reshape(-1, 2),
            np.concatenate([p.depth for p in parts]),
            np.concatenate([p.semantics for p in parts]),
            np.concatenate([p.confidence for p in parts]),
        )
