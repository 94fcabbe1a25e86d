"""Which points of a sparse depth image lie behind nearer surfaces.

A z-buffer keeps the nearest point per pixel, but a sparse cloud is sparse at the pixel
scale: a pixel between the points of a near car may hold only a point of the wall behind it.
Such a point is "surrounded" by nearer points: in every direction around it some point is
clearly nearer. A background point at the edge of a foreground object has nearer points on
one side only, and a ground point has nearer points below it only, so both stay.

The test: split the (2r+1) x (2r+1) window around a pixel into its four quadrants (up-left,
up-right, down-left, down-right, each including the centre row and column); the point is
hidden when at least ``min_sectors`` quadrants hold a point nearer than
``depth * (1 - margin)``.
"""

from __future__ import annotations

import cv2
import numpy as np


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
