"""3D encoder: residual 3D convolutions over the splatted voxel volume, resolution kept."""

from __future__ import annotations

import torch
from torch import nn

from renderlss.models.config import Encoder3DConfig


def conv3d_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3x3 Conv3d (same padding, no bias) -> BatchNorm3d."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
    )


class ResidualBlock3D(nn.Module):
    """x + conv-BN-ReLU-conv-BN(x), then ReLU; [B, C, X, Y, Z] -> same shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3d_bn(channels, channels)
        self.conv2 = conv3d_bn(channels, channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, X, Y, Z] -> [B, C, X, Y, Z]"""
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


class Encoder3D(nn.Module):
    """Input projection (when channels change) and ``num_blocks`` residual blocks.

    Args:
        in_channels: channels of the splatted volume (the depth net's context channels).
        channels: channels of the encoded volume.
        num_blocks: residual blocks.
    """

    def __init__(self, in_channels: int, channels: int = 32, num_blocks: int = 2) -> None:
        super().__init__()
        self.out_channels = channels
        self.project = (
            nn.Identity()
            if in_channels == channels
            else nn.Sequential(conv3d_bn(in_channels, channels), nn.ReLU(inplace=True))
        )
        self.blocks = nn.Sequential(*(ResidualBlock3D(channels) for _ in range(num_blocks)))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """[B, C_in, X, Y, Z] -> [B, channels, X, Y, Z]"""
        return self.blocks(self.project(volume))


def build_encoder3d(cfg: Encoder3DConfig, in_channels: int) -> Encoder3D:
    """3D encoder from its config and the depth net's context channels."""
    return Encoder3D(in_channels, cfg.channels, cfg.num_blocks)
