"""Sparse depth images from projected points, and the removal of points hidden behind nearer
surfaces.

Camera side: the quadrant test of ``renderlss.geometry.occlusion`` on the z-buffer of an
accumulated cloud, which is still sparse at the pixel scale.

LiDAR side: when sweeps are accumulated, a point of another sweep can be tested against the
range image of the reference sweep (see ``renderlss.labels.range_image``) before any camera
sees it. Moved into the reference LiDAR frame, the point is hidden when every pixel of a
small window around its own pixel saw a return clearly nearer than it,
``farthest return < range * (1 - margin)``: the reference LiDAR looked in that direction and
met a surface in front of it. Taking the farthest return of the window (not the pixel's
own) keeps points just beside a silhouette, whose window also holds the background, and
ground points between two beams, whose upper neighbour is farther ground; an empty pixel
(no return: sky, out of range) counts as infinitely far, so it never hides anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from renderlss.geometry import nearest_depth_image, project_to_image
from renderlss.geometry.occlusion import hidden_points
from renderlss.labels.range_image import RangeImageConfig, pixel_of, spherical_coordinates


def points_depth_image(
    points_cam: np.ndarray, intrinsic: np.ndarray, width: int, height: int, min_depth: float
) -> np.ndarray:
    """Z-buffer of camera-frame points.

    Args:
        points_cam: [P, 3] points in the camera frame; intrinsic: [3, 3].
        min_depth: points nearer than this (camera z) are dropped.
    Returns:
        [H, W] float32 camera-z depth of the nearest point per pixel, 0 where none.
    """
    uv, depth = project_to_image(points_cam, intrinsic)
    near = depth > min_depth
    return nearest_depth_image(uv[near], depth[near], width, height)


def remove_hidden_points(
    depth: np.ndarray, radius: int, margin: float, min_sectors: int
) -> tuple[np.ndarray, int]:
    """The sparse depth image without hidden points ([H, W], 0 where removed), and how many
    points were removed."""
    hidden = hidden_points(depth, radius, margin, min_sectors)
    return np.where(hidden, 0, depth).astype(depth.dtype), int(hidden.sum())


@dataclass(frozen=True)
class LidarVisibilityConfig:
    """The LiDAR-side hidden-point test of accumulated sweeps (off unless ``enabled``)."""

    enabled: bool = False
    sensor: RangeImageConfig = field(default_factory=RangeImageConfig)
    margin: float = 0.1  # relative range gap that counts as "clearly nearer"
    # Half size of the window in rows and columns (0, 0: the point's own pixel only).
    window_rows: int = 0
    window_columns: int = 1

    def validate(self, where: str) -> None:
        self.sensor.validate(f"{where}.sensor")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"{where}.margin: must lie in [0, 1), got {self.margin}")
        if self.window_rows < 0 or self.window_columns < 0:
            raise ValueError(f"{where}.window_rows/window_columns: must be >= 0")


def farthest_in_window(ranges: np.ndarray, window_rows: int, window_columns: int) -> np.ndarray:
    """[H, W] float32: the farthest return within ``window_rows`` rows and
    ``window_columns`` columns of each pixel of a range image ([H, W], 0 = empty), empty
    pixels counting as inf. Columns wrap around the azimuth seam; rows beyond the image's
    top and bottom are left out."""
    search = np.where(ranges > 0, ranges, np.inf).astype(np.float32)
    wrapped = np.concatenate(
        [search[:, search.shape[1] - window_columns :], search, search[:, :window_columns]],
        axis=1,
    )
    kernel = np.ones((2 * window_rows + 1, 2 * window_columns + 1), dtype=np.uint8)
    # A dilation is a moving maximum; -inf above and below the image never wins it.
    farthest = cv2.dilate(wrapped, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
    return farthest[:, window_columns : window_columns + search.shape[1]]


def hidden_behind_range_image(
    points: np.ndarray, ranges: np.ndarray, config: LidarVisibilityConfig
) -> np.ndarray:
    """[N] bool: points the reference sweep saw something clearly nearer in front of.

    Args:
        points: [N, 3] in the reference sweep's LiDAR frame.
        ranges: [H, W] the reference sweep's range image (0 = empty), of ``config.sensor``.
    Points outside the vertical field of view are never hidden (nothing was seen there).
    """
    u, v, distance = spherical_coordinates(points, config.sensor)
    rows, cols, inside = pixel_of(u, v, config.sensor)
    farthest = farthest_in_window(ranges, config.window_rows, config.window_columns)
    return inside & (farthest[rows, cols] < distance * (1.0 - config.margin))
