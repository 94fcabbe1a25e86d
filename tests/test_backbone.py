"""ResNet backbone (torchvision key parity, a forward pass against an independent functional
ResNet, strides, freezing), checkpoint loading, neck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from renderlss.configuration import ConfigError, from_dict
from renderlss.models.backbone import ResNet, build_backbone
from renderlss.models.config import BackboneConfig, NeckConfig
from renderlss.models.neck import FusionNeck, build_neck
from renderlss.models.weights import WeightsFileError, load_backbone_weights


def torchvision_state_shapes(depth: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``torchvision.models.resnet{depth}().state_dict()``, in order,
    written out from torchvision's definition (stem 7x7/64, stages of 64..512 planes,
    Bottleneck expansion 4 with the stride on its 3x3, projection shortcut ``downsample``
    as conv1x1 + BN on the first block of a stage whose shape changes, fc to 1000)."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    bottleneck = depth >= 50
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, c_out: int, c_in: int, k: int) -> None:
        shapes[f"{name}.weight"] = (c_out, c_in, k, k)

    def bn(name: str, c: int) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{suffix}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    c_in = 64
    for stage, count in enumerate(blocks):
        planes = 64 * 2**stage
        c_out = planes * (4 if bottleneck else 1)
        for b in range(count):
            p = f"layer{stage + 1}.{b}"
            if bottleneck:
                conv(f"{p}.conv1", planes, c_in, 1)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3", c_out, planes, 1)
                bn(f"{p}.bn3", c_out)
            else:
                conv(f"{p}.conv1", planes, c_in, 3)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
            if b == 0 and (stage > 0 or c_in != c_out):
                conv(f"{p}.downsample.0", c_out, c_in, 1)
                bn(f"{p}.downsample.1", c_out)
            c_in = c_out
    shapes["fc.weight"] = (1000, c_in)
    shapes["fc.bias"] = (1000,)
    return shapes


@pytest.mark.parametrize(
    "depth, num_keys, num_param_tensors",
    # resnet18: 6 stem keys + 8 blocks x 12 + 3 projections x 6 + 2 fc = 122 keys.
    # resnet50: 6 + 16 blocks x 18 + 4 projections x 6 + 2 = 320 keys.
    [(18, 122, 62), (50, 320, 161)],
)
def test_state_dict_matches_torchvision(depth: int, num_keys: int, num_param_tensors: int):
    model = ResNet(depth, num_classes=1000)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = torchvision_state_shapes(depth)
    assert len(got) == num_keys == len(expected)
    assert list(got) == list(expected)
    assert got == expected
    assert len(list(model.parameters())) == num_param_tensors


def test_known_shapes_by_hand():
    shapes = {k: tuple(v.shape) for k, v in ResNet(50, num_classes=1000).state_dict().items()}
    assert shapes["layer1.0.conv1.weight"] == (64, 64, 1, 1)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["fc.weight"] == (1000, 2048)
    shapes18 = {k: tuple(v.shape) for k, v in ResNet(18).state_dict().items()}
    assert shapes18["layer3.0.downsample.0.weight"] == (256, 128, 1, 1)
    assert "layer1.0.downsample.0.weight" not in shapes18
    assert not any(k.startswith("fc.") for k in shapes18)


@pytest.mark.parametrize("depth, total", [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)])
def test_parameter_totals(depth: int, total: int):
    model = ResNet(depth, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == total
    without_fc = ResNet(depth)
    fc = 1000 * (2048 if depth == 50 else 512) + 1000
    assert sum(p.numel() for p in without_fc.parameters()) == total - fc


def test_resnet18_total_from_first_principles():
    # Stem: 7*7*3*64 conv + 2*64 BN affine.
    stem = 7 * 7 * 3 * 64 + 2 * 64
    # layer1: 2 blocks of two 3x3 64->64 convs and two BNs.
    layer1 = 2 * (2 * 9 * 64 * 64 + 4 * 64)

    def stage(c_in: int, c: int) -> int:
        first = 9 * c_in * c + 9 * c * c + 4 * c + c_in * c + 2 * c  # + projection
        return first + 2 * 9 * c * c + 4 * c

    fc = 512 * 1000 + 1000
    total = stem + layer1 + stage(64, 128) + stage(128, 256) + stage(256, 512) + fc
    assert total == 11_689_512
    assert sum(p.numel() for p in ResNet(18, num_classes=1000).parameters()) == total


@pytest.mark.parametrize(
    "depth, channels", [(18, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048))]
)
def test_output_strides_and_channels(depth: int, channels: tuple[int, ...]):
    model = ResNet(depth, out_indices=(0, 1, 2, 3)).eval()
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == channels
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32))
    ]


def test_out_indices_subset_and_odd_size():
    model = ResNet(18, out_indices=(1, 3)).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 70, 100))
    # 70 -> 35 -> 18 (stem) -> 9 (stride 8) -> 5 -> 3 (stride 32): ceil(70 / s).
    assert [tuple(o.shape) for o in outputs] == [(1, 128, 9, 13), (1, 512, 3, 4)]


def _bn_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "bn" in k or "downsample.1" in k}


def test_frozen_bn_stats_unchanged_in_train_mode():
    torch.manual_seed(0)
    model = ResNet(18, frozen_bn=True).train()
    before = _bn_state(model)
    images = torch.randn(2, 3, 64, 64) * 3 + 1
    model(images)[-1].sum().backward()
    after = _bn_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    assert model.conv1.weight.grad is not None
    # Batch-independent: a sample's features do not depend on its batch mates.
    alone = model(images[:1])[-1]
    together = model(images)[-1][:1]
    torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-4)


def test_unfrozen_bn_updates_stats():
    model = ResNet(18, frozen_bn=False).train()
    before = _bn_state(model)
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    after = _bn_state(model)
    assert not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert model.bn1.weight.requires_grad


def test_frozen_stages():
    model = ResNet(18, frozen_stages=1, frozen_bn=False).train()
    assert not model.conv1.weight.requires_grad and not model.bn1.weight.requires_grad
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer1.training and not model.bn1.training and model.layer2.training
    assert ResNet(18, frozen_stages=-1, frozen_bn=False).conv1.weight.requires_grad


def test_classify_needs_fc():
    model = ResNet(18, num_classes=10).eval()
    with torch.no_grad():
        assert tuple(model.classify(torch.randn(2, 3, 64, 64)).shape) == (2, 10)
    with pytest.raises(RuntimeError, match="num_classes=0"):
        ResNet(18).classify(torch.randn(1, 3, 32, 32))


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ResNet(101)
    with pytest.raises(ValueError, match="out_indices"):
        ResNet(18, out_indices=(4,))
    with pytest.raises(ConfigError, match="backbone.depth"):
        from_dict(BackboneConfig, {"depth": 101}, "backbone")
    with pytest.raises(ValueError, match="out_indices"):
        from_dict(BackboneConfig, {"out_indices": [3, 2]}, "backbone")


def random_torchvision_state(depth: int, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with :func:`torchvision_state_shapes`' keys and random values: convs
    scaled by fan-in so activations stay of order one, BN statistics and affines away from
    their identity values (so a skipped or misplaced BN shows)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_state_shapes(depth).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn3.weight") or key.endswith("bn2.weight") and depth < 50:
            # The last BN of a residual branch: small, so the sum stays bounded over blocks.
            state[key] = torch.rand(shape, generator=generator) * 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.2 + (
                1.0 if key.endswith("weight") and "bn" in key else 0.0
            )
    return state


def reference_stages(state: dict[str, torch.Tensor], depth: int, images: torch.Tensor):
    """The four stage outputs of torchvision's ResNet (v1.5: a bottleneck strides on its
    3x3) in eval mode, written with torch.nn.functional on a torchvision state dict."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]

    def bn(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(
            x,
            state[f"{name}.running_mean"],
            state[f"{name}.running_var"],
            state[f"{name}.weight"],
            state[f"{name}.bias"],
            training=False,
            eps=1e-5,
        )

    def conv(x: torch.Tensor, name: str, stride: int = 1) -> torch.Tensor:
        weight = state[f"{name}.weight"]
        return F.conv2d(x, weight, stride=stride, padding=weight.shape[-1] // 2)

    x = F.relu(bn(conv(images, "conv1", 2), "bn1"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    stages = []
    for stage, count in enumerate(blocks):
        for b in range(count):
            p = f"layer{stage + 1}.{b}"
            stride = 2 if stage > 0 and b == 0 else 1
            shortcut = x
            if f"{p}.downsample.0.weight" in state:
                shortcut = bn(conv(x, f"{p}.downsample.0", stride), f"{p}.downsample.1")
            if depth >= 50:
                out = F.relu(bn(conv(x, f"{p}.conv1"), f"{p}.bn1"))
                out = F.relu(bn(conv(out, f"{p}.conv2", stride), f"{p}.bn2"))
                out = bn(conv(out, f"{p}.conv3"), f"{p}.bn3")
            else:
                out = F.relu(bn(conv(x, f"{p}.conv1", stride), f"{p}.bn1"))
                out = bn(conv(out, f"{p}.conv2"), f"{p}.bn2")
            x = F.relu(out + shortcut)
        stages.append(x)
    return stages


@pytest.mark.parametrize("depth", [18, 50])
def test_forward_matches_a_functional_torchvision_resnet(depth: int):
    state = random_torchvision_state(depth, seed=depth)
    model = ResNet(depth, out_indices=(0, 1, 2, 3), num_classes=1000)
    model.load_state_dict(state)
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.eval()(images)
        expected = reference_stages(state, depth, images)
    for stage, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert e.std() > 0.1, stage  # features of order one, not vanishing
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4, msg=f"layer{stage + 1}")


@pytest.fixture(scope="module")
def torchvision_resnet18() -> dict[str, torch.Tensor]:
    """ResNet-18 weights under torchvision's names, built without the model."""
    return random_torchvision_state(18, seed=1)


def _assert_loaded(model: ResNet, source: dict[str, torch.Tensor], prefix: str = "") -> None:
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, source[prefix + key]), key


def test_load_torchvision_file(tmp_path, torchvision_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18, path)
    model = ResNet(18)
    report = load_backbone_weights(model, path)
    assert report.prefix == ""
    assert report.skipped == 2  # fc.weight, fc.bias: this backbone has no classifier
    assert len(report.loaded) == 120 and not report.missing and not report.unexpected
    _assert_loaded(model, torchvision_resnet18)


def test_load_bevdet_style_checkpoint(tmp_path, torchvision_resnet18):
    state = {f"img_backbone.{k}": v for k, v in torchvision_resnet18.items() if "fc" not in k}
    state["img_neck.lateral.weight"] = torch.zeros(4, 4)
    state["img_view_transformer.depth_net.weight"] = torch.zeros(2)
    path = tmp_path / "bevdet.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 24, "config": "..."}}, path)
    model = build_backbone(BackboneConfig(depth=18, pretrained=str(path)))
    _assert_loaded(model, state, "img_backbone.")
    report = load_backbone_weights(ResNet(18), path)
    assert report.prefix == "img_backbone." and report.skipped == 2


def test_load_reports_missing_and_unexpected(tmp_path, torchvision_resnet18):
    state = dict(torchvision_resnet18)
    del state["layer2.1.conv2.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(WeightsFileError, match=r"partial\.pth.*layer2\.1\.conv2\.weight"):
        load_backbone_weights(ResNet(18), path)
    report = load_backbone_weights(ResNet(18), path, strict=False)
    assert report.missing == ["layer2.1.conv2.weight"]
    assert report.unexpected == ["layer5.0.conv1.weight"]


def test_load_rejects_wrong_depth_and_foreign_files(tmp_path, torchvision_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18, path)
    with pytest.raises(WeightsFileError, match=r"resnet18\.pth: layer1\.0\.conv1\.weight"):
        load_backbone_weights(ResNet(50), path)
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsFileError, match="none of its 1 keys"):
        load_backbone_weights(ResNet(18), other)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_backbone_weights(ResNet(18), tmp_path / "missing.pth")


@pytest.mark.parametrize("out_stride", [8, 16, 32])
def test_neck_output_stride(out_stride: int):
    backbone = ResNet(18, out_indices=(2, 3)).eval()
    neck = build_neck(
        NeckConfig(out_channels=24, out_stride=out_stride),
        backbone.out_channels,
        backbone.out_strides,
    ).eval()
    with torch.no_grad():
        fused = neck(backbone(torch.randn(2, 3, 64, 128)))
    assert tuple(fused.shape) == (2, 24, 64 // out_stride, 128 // out_stride)


def test_neck_fuses_both_inputs():
    neck = FusionNeck((8, 16), (16, 32), out_channels=4, out_stride=16).eval()
    fine, coarse = torch.randn(1, 8, 4, 6), torch.randn(1, 16, 2, 3)
    with torch.no_grad():
        base = neck([fine, coarse])
        assert not torch.allclose(base, neck([fine, coarse + 1.0]))
        assert not torch.allclose(base, neck([fine + 1.0, coarse]))
    with pytest.raises(ConfigError, match="out_stride"):
        from_dict(NeckConfig, {"out_stride": 4}, "neck")


def test_untrusted_pickle_is_refused_unless_trusted(tmp_path, torchvision_resnet18):
    path = tmp_path / "with_meta.pth"
    torch.save({"state_dict": torchvision_resnet18, "meta": {"anchor": np.zeros(3)}}, path)
    with pytest.raises(WeightsFileError, match=r"with_meta\.pth.*trusted=True"):
        load_backbone_weights(ResNet(18), path)
    model = ResNet(18)
    load_backbone_weights(model, path, trusted=True)
    _assert_loaded(model, torchvision_resnet18)
