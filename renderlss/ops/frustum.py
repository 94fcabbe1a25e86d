"""Lift: the 3D points of an LSS frustum in the key ego frame.

Feature cell (i, j) of a stride-``s`` feature map of an augmented image has its centre at
augmented image coordinates ``((j + 0.5) * s, (i + 0.5) * s)``; its frustum point for depth
bin ``d`` is the point at camera z ``depths[d]`` behind that centre, after undoing the image
augmentation and the intrinsics, then moved to the ego frame by ``cam2ego`` (which already
includes the BEV augmentation). The pose chain runs in float64 (``renderlss.ops.rays``); the
points are float32 even under autocast.

Two generalisations serve depth-guided sampling and pixel-region offsets
(``renderlss.models.frustum_sampling``, ``renderlss.models.pixel_offsets``): the depths may be
per cell (``[B, N, D', h, w]``, each cell's own samples) instead of shared bin centres
(``[D]``), and each cell's ray may pass through its centre moved by an image offset. Zero
offsets give exactly the regular frustum.
"""

from __future__ import annotations

import torch
from torch import Tensor

from renderlss.ops.rays import cell_centers, image_rays, pixel_rays


def frustum_points(
    depths: Tensor,
    feature_size: tuple[int, int],
    stride: float,
    img_aug: Tensor,
    intrinsics: Tensor,
    cam2ego: Tensor,
    pixel_offsets: Tensor | None = None,
) -> Tensor:
    """Frustum points of every camera, depth sample and feature cell.

    Args:
        depths: camera z in metres: [D] shared by every cell (the depth-bin centres), or
            [B, N, D, h, w] per cell (e.g. depth-guided samples).
        feature_size: (h, w) of the feature map.
        stride: feature stride in augmented-image pixels.
        img_aug: [B, N, 3, 3] original -> augmented image coordinates.
        intrinsics: [B, N, 3, 3] camera matrices of the original images.
        cam2ego: [B, N, 4, 4] ``T_keyego_from_cam``.
        pixel_offsets: [B, N, h, w, 2] (du, dv) in augmented-image pixels added to each
            cell's centre before its ray is cast, or None for the centres themselves.
    Returns:
        [B, N, D, h, w, 3] float32 points in the key ego frame.
    """
    if img_aug.dim() != 4:
        raise ValueError(
            f"frustum_points: img_aug must be [B, N, 3, 3], got {tuple(img_aug.shape)}"
        )
    rows, cols = feature_size
    cells = (*img_aug.shape[:2], rows, cols)  # (B, N, h, w)
    if depths.dim() != 1 and not (
        depths.dim() == 5 and (*depths.shape[:2], *depths.shape[3:]) == cells
    ):
        raise ValueError(
            f"frustum_points: depths must be [D] or [B, N, D, h, w] = [{cells[0]}, {cells[1]}, "
            f"D, {rows}, {cols}], got shape {tuple(depths.shape)}"
        )
    if pixel_offsets is None:
        rays = image_rays(rows, cols, stride, img_aug, intrinsics, cam2ego)  # [B, N, h, w]
    elif tuple(pixel_offsets.shape) != (*cells, 2):
        raise ValueError(
            f"frustum_points: pixel_offsets must be [B, N, h, w, 2] = {[*cells, 2]}, got "
            f"shape {tuple(pixel_offsets.shape)}"
        )
    else:
        uv = cell_centers(rows, cols, stride, device=img_aug.device) + pixel_offsets.float()
        matrices = (img_aug, intrinsics, cam2ego)
        rays = pixel_rays(uv, *(matrix[:, :, None, None] for matrix in matrices))
    with torch.autocast(device_type=depths.device.type, enabled=False):
        # Ego-frame offset per metre of camera z: the unit direction stretched by 1 / z_per_t.
        per_depth = rays.directions / rays.z_per_t.unsqueeze(-1)  # [B, N, h, w, 3]
        depth = depths.to(device=per_depth.device, dtype=torch.float32)
        depth = depth.view(1, 1, -1, 1, 1, 1) if depth.dim() == 1 else depth.unsqueeze(-1)
        return rays.origins.unsqueeze(2) + depth * per_depth.unsqueeze(2)
