"""An images-blind depth predictor: the floor every rendered-depth figure must beat.

Per camera and image-row band, the median target depth of the training split. It never looks
at the images, yet a driving camera's depth depends mostly on the image row (road below the
horizon, far surfaces at it): a network whose rendered depth does not beat it has not learned
depth from its images.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


class RowMedianDepthPrior:
    """Median target depth per (camera, row band); the bands split each image's height
    into ``bands`` equal parts. A band without training targets falls back to its camera's
    median, a camera without any to the median of all targets.

    Args:
        bands: number of row bands per image.
    """

    def __init__(self, bands: int) -> None:
        if bands < 1:
            raise ValueError(f"depth prior: bands must be >= 1, got {bands}")
        self.bands = bands
        self._values: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)
        self._medians: dict[tuple[str, int], float] = {}
        self._camera_medians: dict[str, float] = {}
        self._overall = float("nan")

    def band(self, rows: np.ndarray, height: int) -> np.ndarray:
        """[M] band index of image rows ``rows`` (continuous v coordinates) of an image
        ``height`` pixels high."""
        bands = np.floor(np.asarray(rows, dtype=np.float64) / height * self.bands)
        return np.clip(bands, 0, self.bands - 1).astype(np.int64)

    def add(self, camera: str, height: int, rows: np.ndarray, depth: np.ndarray) -> None:
        """Training targets of one image: v coordinates [M] and depths [M] (> 0 kept)."""
        depth = np.asarray(depth, dtype=np.float64)
        valid = depth > 0
        bands = self.band(np.asarray(rows)[valid], height)
        for band in np.unique(bands):
            self._values[(camera, int(band))].append(depth[valid][bands == band])

    def finish(self) -> RowMedianDepthPrior:
        """Compute the medians from what was added; returns self."""
        if not self._values:
            raise ValueError("depth prior: no training target with depth was added")
        per_camera: dict[str, list[np.ndarray]] = defaultdict(list)
        for (camera, band), parts in self._values.items():
            values = np.concatenate(parts)
            self._medians[(camera, band)] = float(np.median(values))
            per_camera[camera].append(values)
        self._camera_medians = {
            c: float(np.median(np.concatenate(v))) for c, v in per_camera.items()
        }
        self._overall = float(
            np.median(np.concatenate([np.concatenate(v) for v in per_camera.values()]))
        )
        return self

    def predict(self, camera: str, height: int, rows: np.ndarray) -> np.ndarray:
        """[M] float32 predicted depth at v coordinates ``rows`` of one camera's image."""
        if not self._medians:
            raise ValueError("depth prior: call finish() after adding the training targets")
        fallback = self._camera_medians.get(camera, self._overall)
        bands = self.band(rows, height)
        table = np.array([self._medians.get((camera, b), fallback) for b in range(self.bands)])
        return table[bands].astype(np.float32)
