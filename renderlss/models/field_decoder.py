"""Field decoder: density and class logits at any point of the grid box, from the voxel
features trilinearly sampled there and a hash encoding of the point (Instant-NGP).

    f = trilinear(encoder volume [C, X, Y, Z], p)           [C]
    h = hash_grid(p in the unit cube, isotropic)             [L * F]
    o = MLP([f, h]) + b                                      [1 + K]
    sigma = softplus(o_0) (as the head's density), logits = o_1..K

The voxel volumes of the model (the density and logits that Occ3D evaluation and the 3D
losses read) are the decoder at the voxel centres, where ``f`` is the voxel's own feature;
the renderer samples the decoder itself (``field``), so a ray sees detail finer than a
voxel that the hash grid holds (docs/model.md, "Hash-grid field decoder").

Positions map isotropically: the grid box's longest side spans [0, 1], the others a part
of it, so the hash cells are cubes in metres. The encoding and the MLP run in PyTorch, or
with tiny-cuda-nn on CUDA tensors (``backend``); both read the same parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from renderlss.geometry.grid import VoxelGrid
from renderlss.models.config import FieldDecoderConfig
from renderlss.models.fused_mlp import FusedMLP, FusedMLPLayout
from renderlss.models.hash_grid import HashGridEncoding, HashGridLayout
from renderlss.models.tcnn_backend import (
    import_tcnn,
    require_tcnn,
    tcnn_fused_mlp_forward,
    tcnn_hash_grid_encode,
)
from renderlss.ops.field import sample_grid_coordinates


def voxel_centre_coordinates(shape: tuple[int, int, int], device: torch.device) -> Tensor:
    """``grid_sample`` coordinates (z, y, x) of every voxel centre: [X, Y, Z, 3]."""
    axes = [(2 * torch.arange(n, device=device, dtype=torch.float32) + 1) / n - 1 for n in shape]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([z, y, x], dim=-1)


class FieldDecoder(nn.Module):
    """Density and logits from voxel features and a hash encoding of the position.

    Args:
        config: the ``model.field_decoder`` section.
        feature_channels: C, channels of the 3D encoder's volume.
        num_classes: K, semantic classes including free.
        grid: the voxel grid (its box is the encoded cube's frame).
        initial_density: sigma per metre everywhere at initialisation (the density output's
            weights start at 0, its bias at softplus^-1), or None for the MLP's own start.
    """

    def __init__(
        self,
        config: FieldDecoderConfig,
        feature_channels: int,
        num_classes: int,
        grid: VoxelGrid,
        initial_density: float | None = None,
    ) -> None:
        super().__init__()
        if config.backend == "tcnn":
            require_tcnn("model.field_decoder.backend")
        self.backend = config.backend
        self.chunk_points = config.chunk_points
        self.num_classes = num_classes
        self.encoding = HashGridEncoding(
            HashGridLayout(
                config.levels,
                config.log2_table_size,
                config.features_per_level,
                config.base_resolution,
                config.per_level_scale,
            )
        )
        self.mlp = FusedMLP(
            FusedMLPLayout(
                feature_channels + self.encoding.layout.output_dims,
                1 + num_classes,
                config.mlp_width,
                config.mlp_hidden_layers,
            )
        )
        # FullyFusedMLP has no biases; the output's are added after it, in either backend.
        self.output_bias = nn.Parameter(torch.zeros(1 + num_classes))
        if initial_density is not None:
            last = self.mlp.layout.matrix_shapes()[-1]
            with torch.no_grad():
                self.mlp.params[-last[0] * last[1] :].view(last)[0].zero_()
                self.output_bias[0] = math.log(math.expm1(initial_density))
        extent = torch.as_tensor(grid.upper, dtype=torch.float32) - torch.as_tensor(
            grid.lower, dtype=torch.float32
        )
        # Not saved: it follows from the grid.
        self.register_buffer("cube_extent", extent / extent.max(), persistent=False)

    def uses_tcnn(self, device: torch.device) -> bool:
        """Whether points on ``device`` go through tiny-cuda-nn."""
        if self.backend == "torch":
            return False
        if self.backend == "tcnn":
            if device.type != "cuda":
                raise RuntimeError(
                    f"model.field_decoder.backend 'tcnn' needs CUDA tensors, got {device}"
                )
            return True
        return device.type == "cuda" and import_tcnn() is not None

    def unit_positions(self, coords: Tensor) -> Tensor:
        """``grid_sample`` coordinates (z, y, x) in [-1, 1] -> (x, y, z) in the unit cube."""
        return (coords.flip(-1).float() + 1.0) * 0.5 * self.cube_extent

    def decode_chunk(self, features: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
        """Field values at points.

        Args:
            features: [P, C] voxel features sampled at the points.
            coords: [P, 3] their ``grid_sample`` coordinates (no gradient).
        Returns:
            sigma [P] >= 0 per metre, logits [P, K], float32.
        """
        positions = self.unit_positions(coords.detach())
        if self.uses_tcnn(features.device):
            encoded = tcnn_hash_grid_encode(positions, self.encoding.params, self.encoding.layout)
            inputs = torch.cat([features.float(), encoded], dim=-1)
            outputs = tcnn_fused_mlp_forward(inputs, self.mlp.params, self.mlp.layout)
        else:
            inputs = torch.cat([features.float(), self.encoding(positions)], dim=-1)
            outputs = self.mlp(inputs)
        outputs = outputs.float() + self.output_bias
        return F.softplus(outputs[:, 0]), outputs[:, 1:]

    def decode(self, features: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
        """``decode_chunk`` over ``chunk_points`` points at a time: [P, C], [P, 3] ->
        sigma [P], logits [P, K]."""
        step = self.chunk_points
        parts = [
            self.decode_chunk(features[start : start + step], coords[start : start + step])
            for start in range(0, max(len(coords), 1), step)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def decode_volume(self, volume: Tensor) -> tuple[Tensor, Tensor]:
        """The decoder at every voxel centre.

        Args:
            volume: [B, C, X, Y, Z] encoder features.
        Returns:
            density [B, 1, X, Y, Z] >= 0, logits [B, K, X, Y, Z] (float32).
        """
        b, c = volume.shape[:2]
        shape = tuple(volume.shape[2:])
        coords = voxel_centre_coordinates(shape, volume.device).reshape(-1, 3)
        features = volume.movedim(1, -1).reshape(b, -1, c)
        decoded = [self.decode(features[i], coords) for i in range(b)]
        density = torch.stack([sigma for sigma, _ in decoded]).view(b, 1, *shape)
        logits = torch.stack([values for _, values in decoded])  # [B, X*Y*Z, K]
        return density, logits.movedim(-1, 1).reshape(b, self.num_classes, *shape)

    def field(self, volume: Tensor) -> DecodedField:
        """The renderer's ``Field`` of one scene: volume [1, C, X, Y, Z]."""
        return DecodedField(self, volume)


class DecodedField:
    """``renderlss.ops.field.Field`` of one scene: the decoder on its sampled features."""

    def __init__(self, decoder: FieldDecoder, volume: Tensor) -> None:
        if volume.dim() != 5 or volume.shape[0] != 1:
            raise ValueError(f"DecodedField: volume must be [1, C, X, Y, Z], got {volume.shape}")
        self.decoder = decoder
        self.volume = volume

    def __call__(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        """coords [..., 3] -> sigma [...], logits [..., K] (float32)."""
        flat = coords.reshape(-1, 3)
        features = sample_grid_coordinates(self.volume, flat.view(1, 1, -1, 3))[0, :, 0].t()
        sigma, logits = self.decoder.decode(features, flat)
        return sigma.view(coords.shape[:-1]), logits.view(*coords.shape[:-1], -1)
