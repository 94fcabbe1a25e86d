"""Camera rays in the key ego frame, from pixels of augmented images.

A ray is ``origin + t * direction`` with a unit ``direction`` and ``t`` in metres along the
ray. Rendered depth is camera z, not ``t``: ``z_per_t`` is the camera-z component of the unit
direction, so the point at distance ``t`` has camera z ``t * z_per_t``.

Image coordinates are continuous (u, v) = (column, row) in the *augmented* image; ``img_aug``
maps original image coordinates to augmented ones (an affine 3x3: resize, crop, flip,
rotation), ``intrinsics`` is the original camera matrix and ``cam2ego`` (``T_ego_from_cam``)
already holds any BEV augmentation. The pose chain is evaluated in float64 and returned as
float32, outside autocast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from renderlss.geometry.camera import pixel_grid


class Rays(NamedTuple):
    """Rays sharing leading dims ``[...]``."""

    origins: Tensor  # [..., 3] ego frame, metres
    directions: Tensor  # [..., 3] unit vectors, ego frame
    z_per_t: Tensor  # [...] camera z per metre along the ray (> 0 for a pinhole camera)


def cell_centers(rows: int, cols: int, stride: float, device: torch.device | None = None) -> Tensor:
    """Image coordinates of the centres of a ``rows x cols`` grid of ``stride``-pixel cells.

    Cell (i, j) covers columns ``[j*s, (j+1)*s)`` and rows ``[i*s, (i+1)*s)`` and has its centre
    at ``((j + 0.5) * s, (i + 0.5) * s)``; with ``stride = 1`` these are the pixel centres.

    Returns:
        [rows, cols, 2] float32 (u, v).
    """
    centres = torch.from_numpy(pixel_grid(rows, cols) * float(stride))
    return centres.to(device=device, dtype=torch.float32)


def pixel_rays(uv: Tensor, img_aug: Tensor, intrinsics: Tensor, cam2ego: Tensor) -> Rays:
    """Rays through image coordinates of augmented images.

    All arguments broadcast against each other over the leading dims, e.g. ``uv`` [B, N, R, 2]
    with matrices [B, N, 1, 3, 3] for R rays per camera.

    Args:
        uv: [..., 2] (column, row) in augmented image coordinates.
        img_aug: [..., 3, 3] original -> augmented image coordinates (affine).
        intrinsics: [..., 3, 3] camera matrix K of the original image.
        cam2ego: [..., 4, 4] pose ``T_ego_from_cam``.
    Returns:
        Rays with leading dims the broadcast of all inputs'; float32.
    """
    _check_matrix("img_aug", img_aug, 3)
    _check_matrix("intrinsics", intrinsics, 3)
    _check_matrix("cam2ego", cam2ego, 4)
    if uv.shape[-1] != 2:
        raise ValueError(f"pixel_rays: uv must end in 2 (u, v), got shape {tuple(uv.shape)}")
    with torch.autocast(device_type=uv.device.type, enabled=False):
        f64 = torch.float64
        # Compose the small matrices first so the per-ray work is one 3x3 product.
        cam_from_aug = torch.linalg.inv(intrinsics.to(f64)) @ torch.linalg.inv(img_aug.to(f64))
        uv1 = torch.cat([uv.to(f64), torch.ones_like(uv[..., :1], dtype=f64)], dim=-1)
        ray_cam = (cam_from_aug @ uv1.unsqueeze(-1)).squeeze(-1)  # [..., 3] camera frame
        ray_cam = ray_cam / torch.linalg.norm(ray_cam, dim=-1, keepdim=True)
        rotation = cam2ego[..., :3, :3].to(f64)
        directions = (rotation @ ray_cam.unsqueeze(-1)).squeeze(-1)
        shape = directions.shape[:-1]
        origins = cam2ego[..., :3, 3].to(f64).expand(*shape, 3)
        return Rays(
            origins=origins.to(torch.float32),
            directions=directions.to(torch.float32),
            z_per_t=ray_cam[..., 2].to(torch.float32),
        )


def image_rays(
    rows: int, cols: int, stride: float, img_aug: Tensor, intrinsics: Tensor, cam2ego: Tensor
) -> Rays:
    """Rays through the centres of every ``stride``-pixel cell of augmented images.

    Args:
        rows, cols: number of cells (e.g. image height // stride, width // stride).
        stride: cell size in augmented-image pixels.
        img_aug, intrinsics: [..., 3, 3]; cam2ego: [..., 4, 4] (see ``pixel_rays``).
    Returns:
        Rays with leading dims [..., rows, cols].
    """
    uv = cell_centers(rows, cols, stride, device=img_aug.device)  # [rows, cols, 2]
    return pixel_rays(
        uv,
        img_aug[..., None, None, :, :],
        intrinsics[..., None, None, :, :],
        cam2ego[..., None, None, :, :],
    )


def _check_matrix(name: str, matrix: Tensor, size: int) -> None:
    if matrix.dim() < 2 or tuple(matrix.shape[-2:]) != (size, size):
        raise ValueError(f"{name} must be [..., {size}, {size}], got shape {tuple(matrix.shape)}")
