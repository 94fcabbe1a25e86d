"""Sparse depth images from projected points, and the removal of points hidden behind nearer
surfaces.

A z-buffer keeps the nearest point per pixel, but an accumulated cloud is still sparse at
the pixel scale: a pixel between the points of a near car may hold only a point of the wall
behind it. Such a point is "surrounded" by nearer points: in every direction around it some
point is clearly nearer. A background point at the edge of a foreground object has nearer
points on one side only, and a ground point has nearer points below it only, so both stay.

The test: split the (2r+1) x (2r+1) window around a pixel into its four quadrants (up-left,
up-right, down-left, down-right, each including the centre row and column); the point is
hidden when at least ``min_sectors`` quadrants hold a point nearer than
``depth * (1 - margin)``.

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


def nearest_in_quadrants(depth: np.ndarray, radius: int) -> np.ndarray:
    """[4, H, W] float32: the least depth in each quadrant of the window around every pixel
    (inf where a quadrant holds no point). ``depth`` is [H, W] with 0 for empty pixels."""
    search = np.where(depth > 0, depth, np.inf).astype(np.float32)
    kernel = np.ones((radius + 1, radius + 1), dtype=np.uint8)
    # An erosion is a moving minimum; the anchor puts the window on one side of the pixel.
    anchors = [(radius, radius), (0, radius), (radius, 0), (0, 0)]  # (x, y) of the pixel
    return np.stack(
        [
            cv2.erode(
                search, kernel, anchor=anchor, borderType=cv2.BORDER_CONSTANT, borderValue=np.inf
            )
            for anchor in anchors
        ]
    )


def hidden_points(depth: np.ndarray, radius: int, margin: float, min_sectors: int) -> np.ndarray:
    """[H, W] bool: pixels whose point is surrounded by clearly nearer points.

    Args:
        depth: [H, W] sparse depth, 0 where empty.
        radius: half size of the window in pixels.
        margin: relative depth gap that counts as "clearly nearer".
        min_sectors: how many of the 4 quadrants must hold such a point (1..4).
    """
    if not 1 <= min_sectors <= 4:
        raise ValueError(f"min_sectors must be 1..4, got {min_sectors}")
    nearest = nearest_in_quadrants(depth, radius)
    nearer = nearest < depth[None] * (1.0 - margin)
    return (depth > 0) & (nearer.sum(axis=0) >= min_sectors)


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
