"""ResNet-18/34/50 image backbone with torchvision's parameter and buffer names.

The module tree (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ...) is
torchvision's, so a torchvision ImageNet checkpoint or the ``img_backbone.`` part of a BEVDet
checkpoint loads key for key (see :mod:`renderlss.models.weights`). Stride-2 stages put the
stride on the 3x3 convolution (torchvision's "v1.5", mmdet's ``style="pytorch"``).

Normalisation is plain ``nn.BatchNorm2d`` (never SyncBN). With ``frozen_bn`` every BN layer
stays in eval mode with ``requires_grad=False`` affine parameters, so its output does not
depend on the batch: batch size 1 and single-process debugging behave like multi-GPU runs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from renderlss.models.config import BackboneConfig
from renderlss.models.weights import load_backbone_weights

logger = logging.getLogger(__name__)

STAGE_STRIDES = (4, 8, 16, 32)
STAGE_PLANES = (64, 128, 256, 512)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, planes, H / stride, W / stride]"""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a shortcut: ResNet-50."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, 4 * planes, H / stride, W / stride]"""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCHITECTURES: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet returning the outputs of the stages in ``out_indices``.

    Args:
        depth: 18, 34 or 50.
        out_indices: stages to return, 0..3 = ``layer1``..``layer4``.
        frozen_stages: -1 none; 0 the stem; i >= 1 the stem and ``layer1``..``layer{i}``
            (eval mode, no gradients).
        frozen_bn: every BatchNorm in eval mode with frozen affine parameters.
        num_classes: > 0 adds torchvision's ``avgpool`` and ``fc`` (for :meth:`classify`, so a
            whole ImageNet checkpoint loads and can be checked); 0 drops them.
    """

    def __init__(
        self,
        depth: int = 50,
        out_indices: tuple[int, ...] = (2, 3),
        frozen_stages: int = -1,
        frozen_bn: bool = True,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if depth not in ARCHITECTURES:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCHITECTURES)}, got {depth}")
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f"ResNet out_indices must be stage indices in 0..3, got {out_indices}")
        block, blocks_per_stage = ARCHITECTURES[depth]
        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.frozen_bn = frozen_bn

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        for stage, (planes, num_blocks) in enumerate(zip(STAGE_PLANES, blocks_per_stage)):
            stride = 1 if stage == 0 else 2
            layer, in_channels = _make_stage(block, in_channels, planes, num_blocks, stride)
            self.add_module(f"layer{stage + 1}", layer)
        self.stage_channels = tuple(p * block.expansion for p in STAGE_PLANES)
        if num_classes > 0:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()
        self._freeze()

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each returned stage."""
        return tuple(self.stage_channels[i] for i in self.out_indices)

    @property
    def out_strides(self) -> tuple[int, ...]:
        """Stride (input pixels per feature cell) of each returned stage."""
        return tuple(STAGE_STRIDES[i] for i in self.out_indices)

    def _init_weights(self) -> None:
        # torchvision's initialisation, used when no checkpoint is loaded.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem: list[nn.Module] = [self.conv1, self.bn1]
        return stem + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
                    for param in module.parameters():
                        param.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        """Set train/eval mode, keeping frozen stages and frozen BatchNorm in eval mode."""
        super().train(mode)
        if mode:
            self._freeze()
        return self

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 64, H / 4, W / 4] (conv1, bn1, relu, maxpool)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(images))))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs.

        Args:
            images: [B, 3, H, W] normalised RGB.
        Returns:
            one [B, out_channels[k], ceil(H / out_strides[k]), ceil(W / out_strides[k])] per
            entry of ``out_indices`` (exactly H / stride when H is a multiple of 32).
        """
        x = self.stem(images)
        outputs = []
        for stage in range(max(self.out_indices) + 1):
            x = getattr(self, f"layer{stage + 1}")(x)
            if stage in self.out_indices:
                outputs.append(x)
        return outputs

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """torchvision's full forward: [B, 3, H, W] -> [B, num_classes] logits."""
        if not hasattr(self, "fc"):
            raise RuntimeError("this ResNet was built with num_classes=0 and has no classifier")
        x = self.stem(images)
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _make_stage(
    block: type[BasicBlock] | type[Bottleneck],
    in_channels: int,
    planes: int,
    num_blocks: int,
    stride: int,
) -> tuple[nn.Sequential, int]:
    """One ``layerN``: a first block that may stride/project, then identity blocks."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            _conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
        )
    blocks = [block(in_channels, planes, stride, downsample)]
    blocks += [block(out_channels, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks), out_channels


def build_backbone(cfg: BackboneConfig) -> ResNet:
    """ResNet from its config, with ``cfg.pretrained`` (a local file) loaded strictly."""
    backbone = ResNet(
        depth=cfg.depth,
        out_indices=cfg.out_indices,
        frozen_stages=cfg.frozen_stages,
        frozen_bn=cfg.frozen_bn,
    )
    if cfg.pretrained:
        report = load_backbone_weights(backbone, cfg.pretrained)
        logger.info("%s", report.summary())
    return backbone
