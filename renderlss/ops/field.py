"""What the renderer samples along rays: a field of density and class logits.

A ``Field`` is any callable from sample coordinates to values:

    field(coords [..., 3]) -> (sigma [...], logits [..., K] or None)

- ``coords`` are ``grid_sample`` coordinates of the grid box (``grid_coordinates``): an
  affine map of the metric point, **reversed to (z, y, x) order** (``coords[..., 0]`` is the
  metric z, the volume's last axis), with -1 and +1 on the box faces, so voxel centre i of an
  axis of n voxels sits at ``(2 i + 1) / n - 1``. The renderer only asks for points inside
  the box (faces included, up to rounding); density outside it is zero by definition.
- ``sigma`` >= 0 per metre, float32; ``logits`` float32 raw class scores, or None for a
  field without semantics (every call of one field returns logits, or none does).
- Values must be differentiable functions of the field's parameters (gradients reach them
  through the rendering weights); the coordinates carry no gradient.

A field describes one scene, one batch element: ``render_rays(..., field=...)`` takes one
field per batch element. ``VolumeField`` is the voxel volume the renderer samples by default.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from renderlss.geometry.grid import VoxelGrid


class Field(Protocol):
    """Density and logits at ``grid_coordinates`` of one scene (see the module docstring)."""

    def __call__(self, coords: Tensor) -> tuple[Tensor, Tensor | None]: ...


def grid_coordinates(points: Tensor, grid: VoxelGrid, is_direction: bool = False) -> Tensor:
    """Metric (x, y, z) -> ``grid_sample`` coordinates (z, y, x) of a [.., X, Y, Z] volume.

    With ``align_corners=False``, -1 and +1 are the box faces, so voxel centre i sits at
    index i. The map is affine: directions (``is_direction``) are only scaled, so a ray
    ``o + t d`` maps to ``grid_coordinates(o) + t * grid_coordinates(d, is_direction=True)``.

    Args:
        points: [..., 3] in the grid's frame (or directions).
    Returns:
        [..., 3] float32.
    """
    lower = torch.as_tensor(grid.lower, dtype=torch.float32, device=points.device)
    upper = torch.as_tensor(grid.upper, dtype=torch.float32, device=points.device)
    scale = 2.0 / (upper - lower)
    mapped = points.float() * scale if is_direction else (points.float() - lower) * scale - 1.0
    # grid_sample's first coordinate indexes the volume's last axis.
    return mapped.flip(-1)


def sample_grid_coordinates(volume: Tensor, coords: Tensor) -> Tensor:
    """Trilinear interpolation at ``grid_coordinates``, in float32 even under autocast.

    Values between the outermost centres and the box faces are held at the boundary voxel's
    (``padding_mode="border"``): a boundary voxel is a full voxel.

    Args:
        volume: [B, C, X, Y, Z]; coords: [B, P, Q, 3].
    Returns:
        [B, C, P, Q] float32.
    """
    with torch.autocast(device_type=volume.device.type, enabled=False):
        values = F.grid_sample(
            volume.float(),
            coords.float().unsqueeze(1),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )  # [B, C, 1, P, Q]
    return values.squeeze(2)


class VolumeField:
    """Trilinear interpolation of voxel volumes of one scene (the renderer's default field).

    Args:
        density: [1, 1, X, Y, Z] sigma >= 0 per metre.
        logits: [1, K, X, Y, Z] class logits, or None.
    """

    def __init__(self, density: Tensor, logits: Tensor | None = None) -> None:
        if density.dim() != 5 or density.shape[:2] != (1, 1):
            raise ValueError(f"VolumeField: density must be [1, 1, X, Y, Z], got {density.shape}")
        if logits is not None and (
            logits.dim() != 5 or logits.shape[0] != 1 or logits.shape[2:] != density.shape[2:]
        ):
            raise ValueError(
                f"VolumeField: logits {tuple(logits.shape)} do not match density "
                f"{tuple(density.shape)} (expected [1, K, X, Y, Z])"
            )
        self.density = density
        self.logits = logits

    def sigma(self, coords: Tensor) -> Tensor:
        """coords [..., 3] -> sigma [...] float32, without the logits."""
        # grid_sample wants [1, P, Q, 3]; each output point depends on its coordinates only,
        # so the layout of the query does not change any value.
        flat = coords.reshape(1, 1, -1, 3)
        return sample_grid_coordinates(self.density, flat).reshape(coords.shape[:-1])

    def __call__(self, coords: Tensor) -> tuple[Tensor, Tensor | None]:
        """coords [..., 3] -> sigma [...], logits [..., K] or None (float32)."""
        sigma = self.sigma(coords)
        if self.logits is None:
            return sigma, None
        flat = coords.reshape(1, 1, -1, 3)
        logits = sample_grid_coordinates(self.logits, flat)[0, :, 0]  # [K, P]
        return sigma, logits.t().reshape(*coords.shape[:-1], logits.shape[0])
