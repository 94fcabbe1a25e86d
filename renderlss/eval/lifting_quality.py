"""Lifting quality: how well the depth net's distribution places each feature cell.

The lift spreads a cell's context over the depth bins with the softmax of ``depth_logits``;
its expected depth ``sum_i p_i c_i`` (``c_i`` the bin centres) is scored against the LiDAR
depth of the cell, the nearest valid LiDAR depth among the cell's input pixels (the LSS
depth loss's target), over cells whose LiDAR depth lies in the bins' ``[d_min, d_max)``:
depths the lift cannot place are not its error. The same cells are also scored near depth
edges only (:func:`renderlss.models.depth_edges.depth_edge_map` of the LiDAR image), where
a cell's one depth hides a jump and the lift smears context across it.
"""

from __future__ import annotations

import torch

from renderlss.models.config import DepthBinsConfig
from renderlss.models.depth_bins import bin_centers
from renderlss.models.depth_edges import depth_edge_map
from renderlss.models.losses import downsample_min_depth


def expected_depth(depth_logits: torch.Tensor, bins: DepthBinsConfig) -> torch.Tensor:
    """The expected depth of the depth distribution of each cell.

    Args:
        depth_logits: [M, D, h, w] logits of the depth net (D = bins.num_bins).
    Returns:
        [M, h, w] float32 metres, ``sum_i softmax_i * centre_i``.
    """
    if depth_logits.shape[1] != bins.num_bins:
        raise ValueError(
            f"depth logits have {depth_logits.shape[1]} bins, the config {bins.num_bins}"
        )
    probabilities = depth_logits.float().softmax(dim=1)
    centres = bin_centers(bins, device=depth_logits.device).view(1, -1, 1, 1)
    return (probabilities * centres).sum(dim=1)


def lifting_targets(
    lidar_depth: torch.Tensor,
    bins: DepthBinsConfig,
    stride: int,
    size: tuple[int, int],
    edge_threshold: float,
    edge_radius: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell targets of the lifting metric and the cells near a depth edge.

    Args:
        lidar_depth: [M, H, W] LiDAR depth rasterised into the input images, 0 = none.
        stride: input pixels per feature cell.
        size: (h, w) of the feature map.
        edge_threshold, edge_radius: the edge map's relative jump and neighbourhood (cells).
    Returns:
        target [M, h, w] (the cell's nearest LiDAR depth, 0 where none or outside the
        bins' range) and near_edge [M, h, w] bool.
    """
    cell_depth = downsample_min_depth(lidar_depth, stride, size)
    liftable = (cell_depth >= bins.d_min) & (cell_depth < bins.d_max)
    target = torch.where(liftable, cell_depth, torch.zeros_like(cell_depth))
    near_edge = depth_edge_map(lidar_depth, stride, edge_radius, edge_threshold, size)
    return target, near_edge
