"""FPN-style neck: the backbone's last two stage outputs fused into one map at one stride.

Each of the two inputs goes through a 1x1 lateral convolution to ``out_channels``, is
resampled to the output grid (bilinear up, average-pooled down), the two are summed and
smoothed by a 3x3 convolution. Output cell ``(i, j)`` covers input-image pixels
``[j * s, (j + 1) * s) x [i * s, (i + 1) * s)`` with ``s = out_stride``: its centre is at
``(u, v) = ((j + 0.5) * s, (i + 0.5) * s)``, the lift's frustum convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from renderlss.models.config import NeckConfig


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv2d (same padding, no bias) -> BatchNorm2d -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def output_size(size: tuple[int, int], stride: int, out_stride: int) -> tuple[int, int]:
    """(h, w) of the map at ``out_stride`` covering the same image extent as one of ``size``
    at ``stride``: ``H / out_stride`` when the image height H is a multiple of both strides.

    Growing multiplies (a 5-row map at stride 16 becomes 10 rows at stride 8, covering 80
    pixels even for a 70-pixel image); shrinking rounds up like the backbone's convolutions.
    """
    if out_stride <= stride:
        factor = stride // out_stride
        return size[0] * factor, size[1] * factor
    factor = out_stride // stride
    return math.ceil(size[0] / factor), math.ceil(size[1] / factor)


def resample(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, *size]: bilinear when growing, area average when shrinking."""
    if tuple(features.shape[-2:]) == tuple(size):
        return features
    if features.shape[-2] >= size[0] and features.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(features, size)
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)


class FusionNeck(nn.Module):
    """Fuse the last two of the backbone's returned stages into one map.

    Args:
        in_channels: channels of every returned backbone stage (the last two are used).
        in_strides: their strides.
        out_channels: channels of the fused map.
        out_stride: its stride (8, 16 or 32).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int = 256,
        out_stride: int = 16,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides) or not in_channels:
            raise ValueError(
                f"FusionNeck: in_channels {tuple(in_channels)} and in_strides "
                f"{tuple(in_strides)} must be non-empty and of equal length"
            )
        self.in_strides = tuple(in_strides[-2:])
        self.out_channels = out_channels
        self.out_stride = out_stride
        self.laterals = nn.ModuleList(
            conv_bn_relu(c, out_channels, 1) for c in tuple(in_channels)[-2:]
        )
        self.smooth = conv_bn_relu(out_channels, out_channels, 3)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fused features.

        Args:
            features: the backbone's outputs, [B*N, C_k, h_k, w_k] each (last two used).
        Returns:
            [B*N, out_channels, h, w] at ``out_stride``.
        """
        inputs = list(features)[-len(self.laterals) :]
        size = output_size(tuple(inputs[0].shape[-2:]), self.in_strides[0], self.out_stride)
        fused = sum(
            resample(lateral(x), size) for lateral, x in zip(self.laterals, inputs, strict=True)
        )
        return self.smooth(fused)


def build_neck(
    cfg: NeckConfig, in_channels: Sequence[int], in_strides: Sequence[int]
) -> FusionNeck:
    """Neck from its config and the backbone's ``out_channels``/``out_strides``."""
    return FusionNeck(in_channels, in_strides, cfg.out_channels, cfg.out_stride)
