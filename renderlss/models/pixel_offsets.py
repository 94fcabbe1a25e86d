"""Pixel-region offsets: each feature cell lifts from a learned point of its image region.

A zero-initialised 3x3 convolution on the neck features predicts per cell an image offset
``(dx, dy) = range * tanh(raw)`` in feature cells (at most ``range`` cells along each axis),
as deformable convolutions predict their sampling offsets. The cell is then lifted from the
moved location in both senses:

- its ray passes through the moved point (``frustum_points(..., pixel_offsets=...)``), so
  the lifted points lie where that image content looks;
- its depth distribution and context are read at the moved point by bilinear interpolation
  of the cell grid (:func:`sample_cells`), so the content matches the ray.

The gradient reaches the offsets through the bilinear weights only: the splat assigns points
to voxels by floor and has no gradient in their positions (a trilinear splat would, at eight
times the scattered rows). Moving towards the side of a depth discontinuity whose
distribution and context suit the cell's rays lowers the loss, so cells on object boundaries
can pick one surface instead of lifting a blur of both. At initialisation every offset is
exactly 0 and the lift is exactly the regular one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PixelOffsetHead(nn.Module):
    """Neck features -> per-cell image offsets in feature cells.

    Args:
        in_channels: channels of the neck output.
        offset_range: largest offset along each image axis, in feature cells.
    """

    def __init__(self, in_channels: int, offset_range: float) -> None:
        super().__init__()
        self.offset_range = offset_range
        self.offset_out = nn.Conv2d(in_channels, 2, 3, padding=1)
        # Zero weights and bias: an untrained head keeps the regular frustum exactly.
        nn.init.zeros_(self.offset_out.weight)
        nn.init.zeros_(self.offset_out.bias)

    def forward(self, features: Tensor) -> Tensor:
        """Offsets of every cell.

        Args:
            features: [M, C_in, h, w] neck output.
        Returns:
            [M, h, w, 2] float32 (dx, dy) in feature cells, each in [-range, range].
        """
        raw = self.offset_out(features).float()
        return (self.offset_range * torch.tanh(raw)).permute(0, 2, 3, 1)


def sample_cells(values: Tensor, offsets: Tensor) -> Tensor:
    """Bilinear interpolation of a cell grid at each cell's moved centre.

    Cell (i, j) reads ``values`` at continuous cell position ``(i + dy, j + dx)``; positions
    outside the grid read its border. A zero offset reads the cell itself exactly (weight 1
    on it, 0 on its neighbours).

    Args:
        values: [M, C, h, w].
        offsets: [M, h, w, 2] (dx, dy) in cells.
    Returns:
        [M, C, h, w] in the dtype of ``values``; differentiable in both inputs.
    """
    m, channels, rows, cols = values.shape
    if tuple(offsets.shape) != (m, rows, cols, 2):
        raise ValueError(
            f"sample_cells: offsets must be [M, h, w, 2] = {[m, rows, cols, 2]}, got "
            f"{tuple(offsets.shape)}"
        )
    # Positions in at least float32: half precision cannot hold a fraction of a far cell.
    dtype = torch.promote_types(offsets.dtype, torch.float32)
    row = torch.arange(rows, device=values.device, dtype=dtype).view(1, -1, 1)
    col = torch.arange(cols, device=values.device, dtype=dtype).view(1, 1, -1)
    x, y = col + offsets[..., 0].to(dtype), row + offsets[..., 1].to(dtype)  # [M, h, w]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    flat = values.reshape(m, channels, rows * cols)
    result = None
    for dy, weight_y in ((0, 1.0 - fy), (1, fy)):
        for dx, weight_x in ((0, 1.0 - fx), (1, fx)):
            r = (y0 + dy).clamp(0, rows - 1).long()
            c = (x0 + dx).clamp(0, cols - 1).long()
            index = (r * cols + c).view(m, 1, rows * cols).expand(m, channels, rows * cols)
            corner = torch.gather(flat, 2, index).view(m, channels, rows, cols)
            term = (weight_y * weight_x).unsqueeze(1).to(values.dtype) * corner
            result = term if result is None else result + term
    return result
