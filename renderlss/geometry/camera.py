"""Pinhole camera projection. Camera frame: x right, y down, z forward; depth = z.

Image coordinates are continuous (u, v) = (column, row) with the image spanning
[0, W] x [0, H]: pixel ``(row i, column j)`` covers [j, j+1) x [i, i+1), its centre is at
(j + 0.5, i + 0.5), and the pixel holding a projected point is ``floor(u), floor(v)``. With
this convention resizing an image by s scales coordinates by exactly s.
"""

from __future__ import annotations

import numpy as np


def project_to_image(
    points_cam: np.ndarray, intrinsic: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points.

    Args:
        points_cam: [N, 3] points in the camera frame.
        intrinsic: [3, 3] camera matrix.
    Returns:
        uv: [N, 2] continuous image coordinates (column, row); meaningless where depth <= 0.
        depth: [N] camera z.
    """
    pts = np.asarray(points_cam, dtype=np.float64)
    depth = pts[:, 2]
    proj = pts @ np.asarray(intrinsic, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = proj[:, :2] / depth[:, None]
    return uv, depth


def pixel_grid(height: int, width: int) -> np.ndarray:
    """[H, W, 2] continuous (u, v) coordinates of pixel centres."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([u, v], axis=-1)


def unproject_pixels(uv: np.ndarray, depth: np.ndarray, intrinsic: np.ndarray) -> np.ndarray:
    """Camera-frame points at camera-z ``depth`` behind image coordinates ``uv``.

    Args:
        uv: [..., 2] image coordinates; depth: [...] camera z; intrinsic: [3, 3].
    Returns:
        [..., 3] points in the camera frame.
    """
    uv = np.asarray(uv, dtype=np.float64)
    k_inv = np.linalg.inv(np.asarray(intrinsic, dtype=np.float64))
    homog = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], axis=-1)
    rays = homog @ k_inv.T
    return rays * np.asarray(depth, dtype=np.float64)[..., None]


def nearest_per_pixel(uv: np.ndarray, depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Indices of the nearest point in each pixel (a z-buffer), in ascending pixel order.

    Args:
        uv: [M, 2] image coordinates; points outside ``[0, W) x [0, H)`` are left out.
        depth: [M] camera z (ties keep the earlier point).
    Returns:
        [K] indices into ``uv``, one per occupied pixel.
    """
    inside = np.flatnonzero(
        (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    )
    cols = np.floor(uv[inside, 0]).astype(np.int64)
    rows = np.floor(uv[inside, 1]).astype(np.int64)
    pixel = rows * width + cols
    order = np.lexsort((depth[inside], pixel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    return inside[order[first]]


def nearest_depth_image(uv: np.ndarray, depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Points rasterised into an image, the nearest per pixel (see :func:`nearest_per_pixel`).

    Args:
        uv: [M, 2] image coordinates; depth: [M] camera z.
    Returns:
        [H, W] float32 camera-z depth, 0 where no point falls.
    """
    keep = nearest_per_pixel(uv, depth, width, height)
    rows = np.floor(uv[keep, 1]).astype(np.int64)
    cols = np.floor(uv[keep, 0]).astype(np.int64)
    image = np.zeros((height, width), dtype=np.float32)
    image[rows, cols] = depth[keep]
    return image
