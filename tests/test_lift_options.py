"""The lift options in the assembled network: an untrained offset head lifts exactly as the
regular frustum, PDF sampling is deterministic in evaluation and passes the rendering
gradient to the depth net, and two training steps run with each option."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import LOOP_OVERRIDES

import renderlss.models.occupancy_net as occupancy_net_module
from renderlss.data.collate import collate
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import create_infos
from renderlss.engine.build import build_model
from renderlss.engine.experiment import load_experiment
from renderlss.engine.trainer import train

DEMO = Path(__file__).resolve().parents[1] / "configs/synthetic_demo.py"
PDF = "model.depth.sampling='pdf'"
OFFSETS = "model.depth.pixel_offsets=True"


@pytest.fixture(scope="module")
def infos(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return out / "renderlss_infos_train.pkl"


def _config(infos: Path, work_dir: Path, *extra: str):
    overrides = [*LOOP_OVERRIDES, f"data.train_infos={str(infos)!r}"]
    return load_experiment(DEMO, [*overrides, f"train.work_dir={str(work_dir)!r}", *extra])


@pytest.fixture(scope="module")
def batch(infos, tmp_path_factory) -> dict:
    config = _config(infos, tmp_path_factory.mktemp("work"))
    return collate([OccDataset(config.data.train_infos, config.data, train=False)[0]])


def _recorded_splat_inputs(model, batch, monkeypatch) -> tuple[torch.Tensor, ...]:
    """(weights, context, points) that ``model.volume(batch)`` hands to the splat."""
    recorded = []
    splat = occupancy_net_module.splat_depth_context

    def recording_splat(*args, **kwargs):
        recorded.append(args[:3])
        return splat(*args, **kwargs)

    monkeypatch.setattr(occupancy_net_module, "splat_depth_context", recording_splat)
    with torch.no_grad():
        model.volume(batch)
    monkeypatch.setattr(occupancy_net_module, "splat_depth_context", splat)
    return recorded[0]


def test_untrained_offset_head_lifts_the_regular_frustum(infos, batch, tmp_path, monkeypatch):
    torch.manual_seed(0)
    regular = build_model(_config(infos, tmp_path)).eval()
    offset = build_model(_config(infos, tmp_path, OFFSETS)).eval()
    missing, unexpected = offset.load_state_dict(regular.state_dict(), strict=False)
    assert missing and all(key.startswith("pixel_offset_head.") for key in missing)
    assert not unexpected
    expected = _recorded_splat_inputs(regular, batch, monkeypatch)
    lifted = _recorded_splat_inputs(offset, batch, monkeypatch)
    for name, a, b in zip(("weights", "context", "points"), expected, lifted):
        assert torch.equal(a, b), name


def test_pdf_lift_draws_within_the_bins_and_is_deterministic_in_evaluation(
    infos, batch, tmp_path, monkeypatch
):
    config = _config(infos, tmp_path, PDF, "model.depth.pdf_samples=5")
    torch.manual_seed(0)
    model = build_model(config).eval()
    weights, _, points = _recorded_splat_inputs(model, batch, monkeypatch)
    # Five samples per cell, each of mass exactly 1/5.
    assert weights.shape[2] == 5 and torch.equal(weights, torch.full_like(weights, 0.2))
    again = _recorded_splat_inputs(model, batch, monkeypatch)[2]
    assert torch.equal(points, again)
    model.train()
    stratified = _recorded_splat_inputs(model, batch, monkeypatch)[2]
    assert not torch.equal(points, stratified)
    # Camera z of every sample (distance along the camera's optical axis) is in [d_min, d_max].
    cam2ego = batch["cam2ego"].float()
    offset = points - cam2ego[:, :, None, None, None, :3, 3]
    z = torch.einsum("bnsijk,bnk->bnsij", offset, cam2ego[:, :, :3, 2])
    bins = config.model.depth.bins
    assert float(z.min()) >= bins.d_min - 1e-3 and float(z.max()) <= bins.d_max + 1e-3


def test_rendered_depth_trains_the_depth_net_through_pdf_weights(infos, batch, tmp_path):
    torch.manual_seed(0)
    model = build_model(_config(infos, tmp_path, PDF)).train()
    _, rendered = model(batch)
    rendered.depth.sum().backward()
    assert float(model.depth_net.depth_out.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("option", [PDF, OFFSETS])
def test_two_training_steps(infos, tmp_path, option):
    steps = ("train.max_steps=2", "train.checkpoint_interval=2", "model.depth.pdf_samples=8")
    config = _config(infos, tmp_path, option, *steps)
    torch.manual_seed(0)
    result = train(config, log=lambda line: None)
    assert result.step == 2
    losses = [record["loss"] for record in result.history]
    assert len(losses) == 2 and all(math.isfinite(value) for value in losses)
    if option == OFFSETS:
        # The offset head left zero: the bilinear sampling gave it a gradient.
        assert float(result.model.pixel_offset_head.offset_out.weight.detach().abs().sum()) > 0
