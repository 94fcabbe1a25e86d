"""Occupancy head, 3D encoder, depth net, and the model config sections chained together."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from renderlss.configuration import ConfigError, from_dict
from renderlss.models.backbone import build_backbone
from renderlss.models.config import ModelConfig
from renderlss.models.depth_net import DepthNet, build_depth_net, camera_params
from renderlss.models.encoder3d import Encoder3D, build_encoder3d
from renderlss.models.heads import OccupancyHead, build_head
from renderlss.models.neck import build_neck


def test_head_shapes_and_nonnegative_density():
    torch.manual_seed(0)
    head = OccupancyHead(in_channels=8, num_classes=18, hidden_channels=16)
    volume = 50.0 * torch.randn(2, 8, 5, 4, 3)
    density, logits = head(volume)
    assert tuple(density.shape) == (2, 1, 5, 4, 3)
    assert tuple(logits.shape) == (2, 18, 5, 4, 3)
    assert bool((density >= 0).all())


def test_head_linear_decoder_by_hand():
    head = OccupancyHead(in_channels=2, num_classes=3, num_hidden_layers=0)
    with torch.no_grad():
        head.density_mlp[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        head.density_mlp[0].bias.fill_(0.5)
        head.semantic_mlp[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.semantic_mlp[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    volume = torch.tensor([3.0, 2.0]).reshape(1, 2, 1, 1, 1)
    density, logits = head(volume)
    # sigma = softplus(3 - 4 + 0.5) = ln(1 + e^-0.5); logits = (3, 2, 4)
    assert density.item() == pytest.approx(math.log1p(math.exp(-0.5)), 1e-6)
    assert logits.flatten().tolist() == [3.0, 2.0, 4.0]


def test_head_decode_equals_volume_decode():
    torch.manual_seed(1)
    head = OccupancyHead(in_channels=6, num_classes=4, hidden_channels=8, num_hidden_layers=2)
    volume = torch.randn(1, 6, 3, 2, 2)
    density, logits = head(volume)
    # Features of voxel (2, 1, 0) decoded as a point give that voxel's values.
    point_density, point_logits = head.decode(volume[0, :, 2, 1, 0])
    torch.testing.assert_close(point_density, density[0, :, 2, 1, 0])
    torch.testing.assert_close(point_logits, logits[0, :, 2, 1, 0])


def test_encoder3d_keeps_resolution_and_is_residual():
    torch.manual_seed(2)
    encoder = Encoder3D(in_channels=4, channels=6, num_blocks=2).eval()
    out = encoder(torch.randn(2, 4, 6, 5, 3))
    assert tuple(out.shape) == (2, 6, 6, 5, 3)
    # Zero the second conv of each block: a block becomes relu(x), identity on x >= 0.
    same = Encoder3D(in_channels=3, channels=3, num_blocks=2).eval()
    for block in same.blocks:
        nn.init.zeros_(block.conv2[1].weight)
    x = torch.rand(1, 3, 4, 4, 2)
    torch.testing.assert_close(same(x), x)
    assert isinstance(same.project, nn.Identity)


def test_camera_params_by_hand():
    intrinsics = torch.tensor([[[800.0, 0.0, 352.0], [0.0, 400.0, 128.0], [0.0, 0.0, 1.0]]])
    params = camera_params(intrinsics, feature_stride=16, feature_size=(16, 44))
    # log(800 / 16), log(400 / 16), 352 / 704, 128 / 256
    torch.testing.assert_close(params, torch.tensor([[math.log(50.0), math.log(25.0), 0.5, 0.5]]))


def test_depth_net_shapes_and_camera_gate():
    net = DepthNet(in_channels=16, num_bins=12, context_channels=5, mid_channels=8).eval()
    depth_logits, context = net(torch.randn(3, 16, 4, 6))
    assert tuple(depth_logits.shape) == (3, 12, 4, 6)
    assert tuple(context.shape) == (3, 5, 4, 6)
    aware = DepthNet(16, 12, 5, mid_channels=8, camera_aware=True).eval()
    features = torch.randn(2, 16, 4, 6)
    with pytest.raises(ValueError, match="cam_params"):
        aware(features)
    cams = torch.tensor([[3.9, 3.9, 0.5, 0.5], [3.0, 3.0, 0.5, 0.5]])
    logits_a, context_a = aware(features, cams)
    logits_b, context_b = aware(features, cams.flip(0))
    # The gate changes depth, not context.
    assert not torch.allclose(logits_a, logits_b)
    torch.testing.assert_close(context_a, context_b)


def test_model_config_from_dict_and_chain():
    cfg = from_dict(
        ModelConfig,
        {
            "backbone": {"depth": 18, "frozen_bn": True},
            "neck": {"out_channels": 32, "out_stride": 16},
            "depth": {
                "bins": {"mode": "SID", "d_min": 1.0, "d_max": 40.0, "num_bins": 10},
                "mid_channels": 16,
                "context_channels": 8,
            },
            "encoder3d": {"channels": 8, "num_blocks": 1},
            "head": {"num_classes": 18, "hidden_channels": 16},
        },
        "model",
    )
    backbone = build_backbone(cfg.backbone).eval()
    neck = build_neck(cfg.neck, backbone.out_channels, backbone.out_strides).eval()
    depth_net = build_depth_net(cfg.depth, neck.out_channels).eval()
    features = neck(backbone(torch.randn(2, 3, 64, 96)))
    depth_logits, context = depth_net(features)
    assert tuple(depth_logits.shape) == (2, 10, 4, 6) and tuple(context.shape) == (2, 8, 4, 6)
    encoder = build_encoder3d(cfg.encoder3d, cfg.depth.context_channels)
    head = build_head(cfg.head, encoder.out_channels)
    density, logits = head(encoder(torch.randn(1, 8, 4, 4, 2)))
    assert tuple(density.shape) == (1, 1, 4, 4, 2) and tuple(logits.shape) == (1, 18, 4, 4, 2)


def test_model_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="did you mean 'model.head.num_classes'"):
        from_dict(ModelConfig, {"head": {"num_class": 17}}, "model")
    with pytest.raises(ValueError, match="model.encoder3d.channels"):
        from_dict(ModelConfig, {"encoder3d": {"channels": 0}}, "model")
