"""Occupancy heads: per-voxel density (>= 0) and semantic logits from the encoded volume.

Each output has its own small MLP over channels (a field decoder): ``num_hidden_layers``
Linear + Softplus layers, then a Linear to the output. The same weights decode a whole
volume (:meth:`OccupancyHead.forward`) or features already sampled at points along rays
(:meth:`OccupancyHead.decode`), so a renderer may either sample the decoded fields or
decode sampled features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from renderlss.models.config import HeadConfig


def channel_mlp(
    in_channels: int, hidden_channels: int, out_channels: int, num_hidden_layers: int
) -> nn.Sequential:
    """Linear layers over the last axis, Softplus between them: [..., C_in] -> [..., C_out]."""
    layers: list[nn.Module] = []
    width = in_channels
    for _ in range(num_hidden_layers):
        layers += [nn.Linear(width, hidden_channels), nn.Softplus()]
        width = hidden_channels
    layers.append(nn.Linear(width, out_channels))
    return nn.Sequential(*layers)


class OccupancyHead(nn.Module):
    """Density (Softplus, so >= 0) and K semantic logits per voxel or point.

    Args:
        in_channels: channels of the encoded volume.
        num_classes: K, semantic classes including free.
        hidden_channels: width of the MLPs.
        num_hidden_layers: hidden layers per MLP (0: one linear map per output).
        initial_density: sigma per metre of every voxel at initialisation (the density
            MLP's output bias; its output weights start at 0 so that the value is exact);
            None keeps PyTorch's default init.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_channels: int = 64,
        num_hidden_layers: int = 1,
        initial_density: float | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.density_mlp = channel_mlp(in_channels, hidden_channels, 1, num_hidden_layers)
        self.semantic_mlp = channel_mlp(
            in_channels, hidden_channels, num_classes, num_hidden_layers
        )
        self.density_activation = nn.Softplus()
        if initial_density is not None:
            output = self.density_mlp[-1]
            nn.init.zeros_(output.weight)
            # Softplus(b) = initial_density.
            nn.init.constant_(output.bias, math.log(math.expm1(initial_density)))

    def decode(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Field values of channels-last features.

        Args:
            features: [..., C].
        Returns:
            density: [..., 1] >= 0; logits: [..., K].
        """
        density = self.density_activation(self.density_mlp(features))
        return density, self.semantic_mlp(features)

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode every voxel.

        Args:
            volume: [B, C, X, Y, Z].
        Returns:
            density: [B, 1, X, Y, Z] >= 0; logits: [B, K, X, Y, Z].
        """
        density, logits = self.decode(volume.movedim(1, -1))
        return density.movedim(-1, 1), logits.movedim(-1, 1)


def build_head(cfg: HeadConfig, in_channels: int) -> OccupancyHead:
    """Occupancy head from its config and the 3D encoder's channels."""
    return OccupancyHead(
        in_channels,
        cfg.num_classes,
        cfg.hidden_channels,
        cfg.num_hidden_layers,
        cfg.initial_density,
    )
