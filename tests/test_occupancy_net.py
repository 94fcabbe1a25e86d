"""The assembled network on the hand-built dataroot: shapes, gradients, inference rule."""

from __future__ import annotations

import pytest
import torch
from nuscenes_fixture import make_nuscenes_dataroot

from renderlss.configuration import from_dict, to_dict
from renderlss.data.classes import load_classes
from renderlss.data.collate import collate
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import create_infos
from renderlss.engine.build import build_model
from renderlss.engine.experiment import ExperimentConfig
from renderlss.models.objective import loss_terms
from renderlss.models.occupancy_net import predict_occupancy

TINY = dict(
    data=dict(
        input_size=(64, 96),
        load_occ=False,
        grid=dict(point_cloud_range=(-16.0, -16.0, -2.0, 16.0, 16.0, 2.0), voxel_size=(1, 1, 1)),
        targets=dict(sources=["lidar"], num_rays=32, ego_box=(0, 0, 0, 0, 0, 0)),
        workers=0,
        batch_size=2,
    ),
    model=dict(
        backbone=dict(depth=18),
        neck=dict(out_channels=16),
        depth=dict(
            bins=dict(d_min=1.0, d_max=17.0, num_bins=8),
            mid_channels=16,
            context_channels=8,
            num_res_blocks=1,
        ),
        encoder3d=dict(channels=8, num_blocks=1),
        head=dict(hidden_channels=8),
        loss=dict(occ3d_weight=0.0),
    ),
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_nuscenes_dataroot(tmp_path_factory.mktemp("nuscenes") / "root")
    create_infos(str(root), "v1.0-fixture", str(root / "infos"), show_progress=False)
    raw = dict(TINY)
    raw["data"] = dict(
        TINY["data"], classes=to_dict(load_classes("configs/_base_/occ3d_nuscenes.py"))
    )
    config = from_dict(ExperimentConfig, raw)
    dataset = OccDataset(root / "infos" / "renderlss_infos_train.pkl", config.data, train=True)
    return config, collate([dataset[0], dataset[1]])


def test_forward_shapes_and_every_loss_has_gradient(setup):
    config, batch = setup
    torch.manual_seed(0)
    model = build_model(config)
    predictions, rendered = model(batch)
    assert predictions["density"].shape == (2, 1, 32, 32, 4)
    assert predictions["logits"].shape == (2, 18, 32, 32, 4)
    assert predictions["depth_logits"].shape == (12, 8, 4, 6)
    assert rendered.depth.shape == (2, 32) and rendered.semantics.shape == (2, 32, 18)
    terms = loss_terms(predictions, rendered, batch, config.model, {}, 255, config.data.grid)
    assert set(terms) == {"depth", "semantic", "distortion", "entropy", "lss_depth"}
    for name, value in terms.items():
        assert torch.isfinite(value), name
        model.zero_grad()
        value.backward(retain_graph=True)
        grads = [p.grad for p in model.depth_net.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"{name} reaches the depth net"


def test_predict_occupancy_by_hand():
    density = torch.tensor([0.5, 2.0, 3.0]).view(1, 1, 3, 1, 1)
    logits = torch.zeros(1, 4, 3, 1, 1)  # classes 0, 1, 2 and free = 3
    logits[0, 3] = 10.0  # free is the argmax everywhere, but it is never chosen when occupied
    logits[0, 1, 1] = 1.0
    logits[0, 2, 2] = 1.0
    labels = predict_occupancy(density, logits, threshold=1.0, free_index=3)
    assert labels.flatten().tolist() == [3, 1, 2]
    # Without a threshold (3D-supervised networks) the free logit competes like any class.
    assert predict_occupancy(density, logits, None, 3).flatten().tolist() == [3, 3, 3]


def test_channels_last_gives_the_values_and_gradients_of_the_default_layout(setup):
    config, batch = setup
    models = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        raw = to_dict(config)
        raw["model"]["channels_last"] = channels_last
        models[channels_last] = build_model(from_dict(ExperimentConfig, raw)).eval()
    models[True].load_state_dict(models[False].state_dict())
    conv = models[True].backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    features = models[True].backbone(
        batch["img"].flatten(0, 1).contiguous(memory_format=torch.channels_last)
    )
    assert features[-1].is_contiguous(memory_format=torch.channels_last)
    outputs, grads = {}, {}
    for channels_last, model in models.items():
        predictions = model.volume(batch)
        (predictions["density"].mean() + predictions["logits"].square().mean()).backward()
        outputs[channels_last] = predictions
        grads[channels_last] = model.backbone.conv1.weight.grad
    for key in ("density", "logits", "depth_logits"):
        torch.testing.assert_close(outputs[True][key], outputs[False][key], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-3, atol=1e-6)
