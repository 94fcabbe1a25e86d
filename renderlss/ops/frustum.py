"""Lift: the 3D points of an LSS frustum in the key ego frame.

Feature cell (i, j) of a stride-``s`` feature map of an augmented image has its centre at
augmented image coordinates ``((j + 0.5) * s, (i + 0.5) * s)``; its frustum point for depth
bin ``d`` is the point at camera z ``depths[d]`` behind that centre, after undoing the image
augmentation and the intrinsics, then moved to the ego frame by ``cam2ego`` (which already
includes the BEV augmentation). The pose chain runs in float64 (``renderlss.ops.rays``); the
points are float32 even under autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor

from renderlss.ops.rays import image_rays


def frustum_points(
    depths: Tensor,
    feature_size: tuple[int, int],
    stride: float,
    img_aug: Tensor,
    intrinsics: Tensor,
    cam2ego: Tensor,
) -> Tensor:
    """Frustum points of every camera, depth bin and feature cell.

    Args:
        depths: [D] depth-bin centres (camera z, metres).
        feature_size: (h, w) of the feature map.
        stride: feature stride in augmented-image pixels.
        img_aug: [B, N, 3, 3] original -> augmented image coordinates.
        intrinsics: [B, N, 3, 3] camera matrices of the original images.
        cam2ego: [B, N, 4, 4] ``T_keyego_from_cam``.
    Returns:
        [B, N, D, h, w, 3] float32 points in the key ego frame.
    """
    if depths.dim() != 1:
        raise ValueError(f"frustum_points: depths must be [D], got shape {tuple(depths.shape)}")
    if img_aug.dim() != 4:
        raise ValueError(
            f"frustum_points: img_aug must be [B, N, 3, 3], got {tuple(img_aug.shape)}"
        )
    rows, cols = feature_size
    rays = image_rays(rows, cols, stride, img_aug, intrinsics, cam2ego)  # [B, N, h, w]
    with torch.autocast(device_type=depths.device.type, enabled=False):
        # Ego-frame offset per metre of camera z: the unit direction stretched by 1 / z_per_t.
        per_depth = rays.directions / rays.z_per_t.unsqueeze(-1)  # [B, N, h, w, 3]
        depth = depths.to(device=per_depth.device, dtype=torch.float32).view(1, 1, -1, 1, 1, 1)
        return rays.origins.unsqueeze(2) + depth * per_depth.unsqueeze(2)
