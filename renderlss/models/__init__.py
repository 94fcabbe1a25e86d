"""Network modules of the LSS occupancy model and its losses.

Assembly order and shapes (B samples, N cameras, input images H x W):

    ResNet             [B*N, 3, H, W]            -> stage maps at strides 4..32
    FusionNeck         last two stage maps       -> [B*N, C_neck, H/s, W/s]
    DepthNet           [B*N, C_neck, h, w]       -> depth logits [B*N, D, h, w],
                                                    context [B*N, C_ctx, h, w]
    (lift + splat in renderlss.ops; PDF depths: frustum_sampling, moved cells:
     pixel_offsets)                            -> volume [B, C_ctx, X, Y, Z]
    Encoder3D          [B, C_ctx, X, Y, Z]       -> [B, C, X, Y, Z]
    OccupancyHead      [B, C, X, Y, Z]           -> density [B, 1, X, Y, Z],
                                                    logits [B, K, X, Y, Z]
"""

from renderlss.models.backbone import ResNet, build_backbone
from renderlss.models.config import (
    BackboneConfig,
    DepthBinsConfig,
    DepthConfig,
    Encoder3DConfig,
    HeadConfig,
    LossConfig,
    ModelConfig,
    NeckConfig,
)
from renderlss.models.depth_bins import (
    bin_centers,
    bin_edges,
    depth_to_bin,
    depth_to_index,
    index_to_depth,
    one_hot_depth_target,
    soft_depth_target,
)
from renderlss.models.depth_net import DepthNet, build_depth_net, camera_params
from renderlss.models.encoder3d import Encoder3D, build_encoder3d
from renderlss.models.heads import OccupancyHead, build_head
from renderlss.models.losses import (
    class_weights_from_counts,
    distortion_loss,
    downsample_min_depth,
    lss_depth_loss,
    occupancy_ce_loss,
    opacity_entropy_loss,
    semantic_ce_loss,
    silog_loss,
)
from renderlss.models.neck import FusionNeck, build_neck
from renderlss.models.weights import LoadReport, WeightsFileError, load_backbone_weights

__all__ = [
    "BackboneConfig",
    "WeightsFileError",
    "DepthBinsConfig",
    "DepthConfig",
    "DepthNet",
    "Encoder3D",
    "Encoder3DConfig",
    "FusionNeck",
    "HeadConfig",
    "LoadReport",
    "LossConfig",
    "ModelConfig",
    "NeckConfig",
    "OccupancyHead",
    "ResNet",
    "bin_centers",
    "bin_edges",
    "build_backbone",
    "build_depth_net",
    "build_encoder3d",
    "build_head",
    "build_neck",
    "camera_params",
    "class_weights_from_counts",
    "depth_to_bin",
    "depth_to_index",
    "distortion_loss",
    "downsample_min_depth",
    "index_to_depth",
    "load_backbone_weights",
    "lss_depth_loss",
    "occupancy_ce_loss",
    "one_hot_depth_target",
    "opacity_entropy_loss",
    "semantic_ce_loss",
    "silog_loss",
    "soft_depth_target",
]
