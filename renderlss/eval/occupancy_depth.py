"""The depth at which a ray first enters predicted occupancy.

Rendering integrates the density; occupancy is predicted by thresholding the density or by
the class logits. When the two disagree, the depth a model renders is not where its
predicted scene starts. Marching each ray through the predicted occupied voxels gives the
depth the prediction implies, which evaluation scores against the LiDAR and against the
rendered depth (``depth/occupancy/...``, ``depth/agreement/...``).
"""

from __future__ import annotations

import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.models.ray_query import flat_voxel_index

# Rays marched together: bounds the index tensors to about this many rays x samples per ray.
RAY_CHUNK = 4096


def first_occupied_depth(
    occupied: torch.Tensor, rays: dict[str, torch.Tensor], grid: VoxelGrid, fraction: float = 0.1
) -> torch.Tensor:
    """Camera-z depth at which each ray first enters an occupied voxel (by floor), marched
    in steps of ``fraction`` of the smallest voxel edge; the ray's grid exit where it meets
    none.

    Args:
        occupied: [X, Y, Z] bool; rays: ``origins``/``dirs`` [1, R, 3], ``z_per_t`` [1, R].
    Returns:
        [R] depth.
    """
    diagonal = float(((grid.upper - grid.lower) ** 2).sum() ** 0.5)
    device = rays["origins"].device
    t = torch.arange(0.0, diagonal, fraction * float(min(grid.voxel_size)), device=device)
    flat_occupied = occupied.flatten().to(device)
    depths = []
    for start in range(0, rays["z_per_t"].shape[1], RAY_CHUNK):
        chunk = slice(start, start + RAY_CHUNK)
        origins, dirs = rays["origins"][:, chunk], rays["dirs"][:, chunk]
        samples = t.expand(*origins.shape[:2], len(t))  # [1, R', S]
        flat, inside = flat_voxel_index(origins, dirs, samples, grid)
        hit = (flat_occupied[flat] & inside)[0]  # [R', S]
        # The first hit, or the last sample inside the grid.
        last_inside = (inside[0] * torch.arange(len(t), device=device)).argmax(dim=1)
        first_hit = torch.where(hit.any(dim=1), hit.float().argmax(dim=1), last_inside)
        depths.append(t[first_hit] * rays["z_per_t"][0, chunk])
    return torch.cat(depths) if depths else torch.zeros(0, device=device)
