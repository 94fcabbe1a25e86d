"""Depth discontinuities of a sparse target depth image at the feature stride (EA-LSS).

A feature cell covers ``s x s`` input pixels, so a depth jump inside a cell is lost when the
cell keeps one depth (the LSS target keeps the nearest). The edge map therefore looks at
every valid depth of the cell and of its neighbours: with ``max`` and ``min`` the largest
and smallest valid target depth over the ``(2 r + 1) x (2 r + 1)`` cells around a cell,
the cell is an edge when ``(max - min) / min > threshold``. Pixels without a measurement
(depth <= 0: sparse LiDAR, gaps of dense depth) take no part; a window without any valid
depth is no edge. Losses weigh edge cells (and the rays that fall into them) up; the
evaluation scores the lifted depth near edges with the same map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def depth_edge_map(
    depth: torch.Tensor,
    stride: int,
    radius: int,
    threshold: float,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Edge cells of sparse depth images (see the module docstring).

    Cell ``(i, j)`` covers pixels ``[i s, (i + 1) s) x [j s, (j + 1) s)``; pixels past the
    image (H or W not a multiple of s) and cells past the map count as empty.

    Args:
        depth: [M, H, W] camera-z depth, <= 0 where there is no measurement.
        stride: s, input pixels per feature cell.
        radius: r, neighbour cells on each side (0: the cell alone).
        threshold: relative depth jump ``(max - min) / min`` above which a cell is an edge.
        size: (h, w) of the feature map; default ``(ceil(H / s), ceil(W / s))``.
    Returns:
        [M, h, w] bool.
    """
    height, width = depth.shape[-2:]
    h, w = size if size is not None else (math.ceil(height / stride), math.ceil(width / stride))
    if height > h * stride or width > w * stride:
        raise ValueError(
            f"depth map {height}x{width} is larger than feature map {h}x{w} covers at stride "
            f"{stride}"
        )
    valid = depth > 0
    padding = (0, w * stride - width, 0, h * stride - height)
    # Invalid pixels are 0 for the max and +inf for the min, so neither ever wins.
    largest = F.pad(torch.where(valid, depth, 0.0).float(), padding, value=0.0).unsqueeze(1)
    smallest = F.pad(torch.where(valid, depth, math.inf).float(), padding, value=math.inf)
    window = 2 * radius + 1
    # max_pool2d pads with -inf, which never wins either max.
    largest = F.max_pool2d(F.max_pool2d(largest, stride), window, 1, radius)
    smallest = -F.max_pool2d(F.max_pool2d(-smallest.unsqueeze(1), stride), window, 1, radius)
    has_depth = torch.isfinite(smallest)
    jump = (largest - smallest) > threshold * smallest
    return (has_depth & jump).squeeze(1)


def edge_weights(edges: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """[...] float32 loss weights: ``edge_weight`` on edge cells, 1 elsewhere."""
    return edges.float() * (edge_weight - 1.0) + 1.0


def ray_feature_cells(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    cam2ego: torch.Tensor,
    intrinsic: torch.Tensor,
    img_aug: torch.Tensor,
    stride: int,
    size: tuple[int, int],
    tolerance: float = 1e-3,
) -> torch.Tensor:
    """The feature cell of the sample's input images that each target ray passes through.

    A ray belongs to camera n when it starts at that camera's centre (within ``tolerance``
    metres) and points into its input image; of several such cameras the first is taken.
    Rays of other frames (adjacent keyframes) start elsewhere and get no cell. A stationary
    ego makes an adjacent frame's camera start at the current one's centre; its rays then
    get the current image's cell they point into, which sees the same static surface.

    Args:
        origins, dirs: [B, R, 3] rays in the (augmented) key-ego frame.
        cam2ego: [B, N, 4, 4] camera -> key-ego of the input images (augmentation included).
        intrinsic, img_aug: [B, N, 3, 3] camera matrices and original -> input image maps.
        stride: input pixels per cell.
        size: (h, w) of the feature map.
        tolerance: metres between a ray's origin and a camera centre that still match.
    Returns:
        [B, R] int64 index into the flattened [B * N * h * w] cells, -1 for no cell.
    """
    b, n = cam2ego.shape[:2]
    h, w = size
    rotation, centre = cam2ego[..., :3, :3].float(), cam2ego[..., :3, 3].float()  # [B, N, ...]
    # Camera coordinates of the direction (the rotation is orthonormal: its inverse is R^T).
    local = torch.einsum("bnji,brj->bnri", rotation, dirs.float())  # [B, N, R, 3]
    pixel = torch.einsum("bnij,bnrj->bnri", (img_aug @ intrinsic).float(), local)
    z = pixel[..., 2]
    uv = pixel[..., :2] / z.clamp(min=1e-6).unsqueeze(-1)
    row = torch.floor(uv[..., 1] / stride).long()
    col = torch.floor(uv[..., 0] / stride).long()
    starts_here = (origins.float().unsqueeze(1) - centre.unsqueeze(2)).norm(dim=-1) <= tolerance
    inside = starts_here & (z > 0) & (row >= 0) & (row < h) & (col >= 0) & (col < w)
    image = torch.arange(b, device=origins.device).view(b, 1, 1) * n + torch.arange(
        n, device=origins.device
    ).view(1, n, 1)
    cell = (image * h + row.clamp(0, h - 1)) * w + col.clamp(0, w - 1)  # [B, N, R]
    # The first matching camera: the largest of (N - n) over matching n.
    priority = torch.where(inside, n - torch.arange(n, device=origins.device).view(1, n, 1), 0)
    best = priority.argmax(dim=1, keepdim=True)  # [B, 1, R]
    chosen = cell.gather(1, best).squeeze(1)
    return torch.where(inside.any(dim=1), chosen, -1)


def ray_edge_weights(cell_weights: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Per-ray weights read from the cell weights [B * N, h, w] at ``cells`` [B, R]
    (:func:`ray_feature_cells`); 1 for rays without a cell. Returns [B, R] float32."""
    flat = cell_weights.reshape(-1).float()
    read = flat[cells.clamp(min=0)]
    return torch.where(cells >= 0, read, 1.0)
