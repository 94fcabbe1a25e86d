"""Depth net: per image cell, logits over the depth bins and context features to lift.

A 3x3 reduction, then two branches: context is a 1x1 map of the reduced features; depth goes
through residual blocks (optionally gated by the camera's intrinsics) and a 1x1 map to one
logit per bin. The lift turns the logits into a distribution with :func:`depth_distribution`:
a softmax over bins, or, where a measured depth is given (the depth-aware teacher), a one-hot
at the measured depth's bin.
"""

from __future__ import annotations

import torch
from torch import nn

from renderlss.models.backbone import BasicBlock
from renderlss.models.config import DepthBinsConfig, DepthConfig
from renderlss.models.depth_bins import one_hot_depth_target
from renderlss.models.losses import downsample_min_depth
from renderlss.models.neck import conv_bn_relu

NUM_CAMERA_PARAMS = 4


def camera_params(
    intrinsics: torch.Tensor, feature_stride: int, feature_size: tuple[int, int]
) -> torch.Tensor:
    """Intrinsics as the depth net's conditioning vector.

    Focal lengths enter as logs in feature cells (the apparent size of an object at a given
    depth scales with them); the principal point as a fraction of the feature map.

    Args:
        intrinsics: [B*N, 3, 3] of the network input image (after resize/crop), pixels.
        feature_stride: input pixels per feature cell.
        feature_size: (h, w) of the feature map.
    Returns:
        [B*N, 4]: log(fx / s), log(fy / s), cx / (s w), cy / (s h).
    """
    h, w = feature_size
    s = float(feature_stride)
    return torch.stack(
        [
            torch.log(intrinsics[:, 0, 0] / s),
            torch.log(intrinsics[:, 1, 1] / s),
            intrinsics[:, 0, 2] / (s * w),
            intrinsics[:, 1, 2] / (s * h),
        ],
        dim=-1,
    )


def depth_distribution(
    depth_logits: torch.Tensor,
    measured_depth: torch.Tensor | None,
    bins: DepthBinsConfig,
    stride: int,
) -> torch.Tensor:
    """The distribution over depth bins that the lift spreads each cell's context with.

    Without ``measured_depth``: the softmax of the logits. With it: at every feature cell
    that holds a measured depth in ``[d_min, d_max)`` (its nearest one, as the LSS depth loss
    reads a cell), a one-hot at that depth's bin, so the whole lifted mass of the cell lands
    on the measured surface; elsewhere the softmax.

    Args:
        depth_logits: [M, D, h, w] from the depth net (M = B*N images).
        measured_depth: [M, H, W] sparse camera-z depth in the augmented input images, 0
            where none, or None.
        bins: the depth bins (D = bins.num_bins).
        stride: input pixels per feature cell.
    Returns:
        [M, D, h, w], summing to 1 over D.
    """
    probabilities = depth_logits.softmax(dim=1)
    if measured_depth is None:
        return probabilities
    cell_depth = downsample_min_depth(measured_depth, stride, tuple(depth_logits.shape[-2:]))
    one_hot, measured = one_hot_depth_target(cell_depth.float(), bins)
    one_hot = one_hot.movedim(-1, 1).to(probabilities.dtype)
    return torch.where(measured.unsqueeze(1), one_hot, probabilities)


class DepthNet(nn.Module):
    """Neck features -> depth logits and context.

    Args:
        in_channels: channels of the neck output.
        num_bins: D, the number of depth bins.
        context_channels: C_ctx, channels lifted into the volume.
        mid_channels: width of both branches.
        num_res_blocks: residual blocks of the depth branch.
        camera_aware: gate the depth branch's channels by an MLP of :func:`camera_params`.
    """

    def __init__(
        self,
        in_channels: int,
        num_bins: int,
        context_channels: int,
        mid_channels: int = 256,
        num_res_blocks: int = 2,
        camera_aware: bool = False,
    ) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.context_channels = context_channels
        self.reduce = conv_bn_relu(in_channels, mid_channels, 3)
        self.context_out = nn.Conv2d(mid_channels, context_channels, 1)
        self.camera_gate = (
            nn.Sequential(
                nn.Linear(NUM_CAMERA_PARAMS, mid_channels),
                nn.ReLU(inplace=True),
                nn.Linear(mid_channels, mid_channels),
                nn.Sigmoid(),
            )
            if camera_aware
            else None
        )
        self.depth_blocks = nn.Sequential(
            *(BasicBlock(mid_channels, mid_channels) for _ in range(num_res_blocks))
        )
        self.depth_out = nn.Conv2d(mid_channels, num_bins, 1)

    def forward(
        self, features: torch.Tensor, cam_params: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth logits and context.

        Args:
            features: [B*N, C_in, h, w] neck output.
            cam_params: [B*N, 4] from :func:`camera_params`; required when camera-aware,
                ignored otherwise.
        Returns:
            depth_logits: [B*N, D, h, w]; context: [B*N, C_ctx, h, w].
        """
        reduced = self.reduce(features)
        context = self.context_out(reduced)
        depth_features = reduced
        if self.camera_gate is not None:
            if cam_params is None:
                raise ValueError("DepthNet is camera-aware: pass cam_params [B*N, 4]")
            gate = self.camera_gate(cam_params.to(reduced.dtype))
            depth_features = reduced * gate[:, :, None, None]
        depth_logits = self.depth_out(self.depth_blocks(depth_features))
        return depth_logits, context


def build_depth_net(cfg: DepthConfig, in_channels: int) -> DepthNet:
    """Depth net from its config and the neck's output channels."""
    return DepthNet(
        in_channels=in_channels,
        num_bins=cfg.bins.num_bins,
        context_channels=cfg.context_channels,
        mid_channels=cfg.mid_channels,
        num_res_blocks=cfg.num_res_blocks,
        camera_aware=cfg.camera_aware,
    )
