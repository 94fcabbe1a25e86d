"""The edge-aware depth and focal options through ``loss_terms``, on a tiny hand-built batch.

One camera at the ego origin looking along +z (f = 8, principal point (8, 4)) sees a
16 x 8 input image; at stride 8 that is two feature cells. Cell 0 holds 2.5 m everywhere,
cell 1 holds 1.5 m (columns 8-11) and 2.5 m (columns 12-15): a jump of 2/3, an edge at the
default threshold 0.5. Ray 0 passes through cell 0, ray 1 through cell 1.
"""

from __future__ import annotations

import math

import pytest
import torch

from renderlss.configuration import from_dict
from renderlss.geometry.grid import VoxelGrid
from renderlss.models.config import ModelConfig
from renderlss.models.losses import emptiness_loss
from renderlss.models.objective import loss_terms
from renderlss.ops.render import RenderOutput

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)
OFF = dict(distortion_weight=0.0, entropy_weight=0.0)


def model_config(**loss) -> ModelConfig:
    return from_dict(
        ModelConfig,
        dict(
            neck=dict(out_stride=8),
            depth=dict(bins=dict(mode="UD", d_min=1.0, d_max=3.0, num_bins=2)),
            head=dict(num_classes=3),
            loss=dict(OFF, **loss),
        ),
        "model",
    )


def tiny_case() -> tuple[dict, RenderOutput, dict]:
    image_depth = torch.full((1, 1, 8, 16), 2.5)
    image_depth[..., 8:12] = 1.5
    image_depth[..., 1::2, :] = 0.0  # sparse: every other row has no measurement
    dirs = torch.tensor([[[-0.5, 0.0, 1.0], [0.5, 0.0, 1.0]]])  # u = 8 x + 8: 4 and 12
    targets = dict(
        origins=torch.zeros(1, 2, 3),
        dirs=dirs,
        z_per_t=1.0 / dirs.norm(dim=-1),
        depth=torch.tensor([[2.0, 2.0]]),
        semantics=torch.tensor([[0, 1]]),
        confidence=torch.ones(1, 2),
        image_depth=image_depth,
    )
    batch = dict(
        targets=targets,
        cam2ego=torch.eye(4).view(1, 1, 4, 4),
        intrinsic=torch.tensor([[8.0, 0.0, 8.0], [0.0, 8.0, 4.0], [0.0, 0.0, 1.0]]).view(
            1, 1, 3, 3
        ),
        img_aug=torch.eye(3).view(1, 1, 3, 3),
        voxel_semantics=torch.tensor([0, 2]).view(1, 2, 1, 1),
        mask_camera=torch.ones(1, 2, 1, 1, dtype=torch.bool),
    )
    semantics = torch.tensor([[[0.0, 0.0, 0.0], [0.0, LN2, 0.0]]])  # p_t = 1/3, 1/2
    rendered = RenderOutput(
        depth=torch.tensor([[1.0, 4.0]]),  # log errors -ln 2, ln 2
        opacity=torch.ones(1, 2),
        semantics=semantics,
        weights=torch.ones(1, 2, 1),
        t_starts=torch.zeros(1, 2, 1),
        t_ends=torch.ones(1, 2, 1),
        num_samples=torch.tensor(2),
    )
    depth_logits = torch.zeros(1, 2, 1, 2)
    depth_logits[0, 0] = LN3  # p = (3/4, 1/4) in both cells
    predictions = dict(depth_logits=depth_logits, logits=torch.zeros(1, 3, 2, 1, 1))
    return batch, rendered, predictions


def terms_of(config: ModelConfig, class_weights: dict | None = None) -> dict[str, float]:
    batch, rendered, predictions = tiny_case()
    terms = loss_terms(predictions, rendered, batch, config, class_weights or {}, 255, VoxelGrid())
    return {name: value.item() for name, value in terms.items()}


def silog(weights: tuple[float, float], lam: float = 0.85) -> float:
    g = (-LN2, LN2)
    total = sum(weights)
    mean = sum(w * x for w, x in zip(weights, g)) / total
    mean_square = sum(w * x * x for w, x in zip(weights, g)) / total
    return math.sqrt(mean_square - lam * mean * mean)


def test_edge_aware_lss_and_rendered_depth():
    # Cell 0: target bin 1 (2.5 m), CE ln 4; cell 1: nearest depth 1.5 m, bin 0, CE ln(4/3).
    plain = terms_of(model_config(lss_depth_mode="ce", lss_depth_weight=1.0))
    assert plain["lss_depth"] == pytest.approx((LN4 + math.log(4 / 3)) / 2, rel=1e-6)
    assert plain["depth"] == pytest.approx(silog((1.0, 1.0)), rel=1e-6)
    edge = dict(lss_depth_mode="ce", lss_depth_weight=1.0, depth_edge_weight=3.0)
    weighted = terms_of(model_config(**edge))
    assert weighted["lss_depth"] == pytest.approx((LN4 + 3 * math.log(4 / 3)) / 4, rel=1e-6)
    assert weighted["depth"] == plain["depth"]  # the rendered term is off by default
    both = terms_of(model_config(**edge, depth_edge_rendered=True))
    assert both["depth"] == pytest.approx(silog((1.0, 3.0)), rel=1e-6)
    # A threshold above the jump finds no edge.
    none = terms_of(model_config(**edge, depth_edge_rendered=True, depth_edge_threshold=0.7))
    assert none == pytest.approx(plain, rel=1e-6)


def test_focal_semantic_and_occ3d_terms():
    weights = {"semantic": torch.tensor([1.0, 2.0, 1.0]), "occ3d": torch.tensor([1.0, 1.0, 4.0])}
    options = dict(occ3d_weight=1.0, depth_weight=0.0, lss_depth_weight=0.0)
    ce = terms_of(model_config(**options), weights)
    assert ce["semantic"] == pytest.approx((LN3 + 2 * LN2) / 3, rel=1e-6)
    focal = terms_of(model_config(**options, semantic_loss="focal"), weights)
    # Rays: p_t = 1/3 (weight 1) and 1/2 (weight 2), gamma = 2.
    expected = ((2 / 3) ** 2 * LN3 + 2 * 0.25 * LN2) / 3
    assert focal["semantic"] == pytest.approx(expected, rel=1e-6)
    # Voxels: uniform logits, p_t = 1/3 for classes 0 (weight 1) and 2 (weight 4).
    assert ce["occ3d"] == pytest.approx(LN3, rel=1e-6)
    assert focal["occ3d"] == pytest.approx((2 / 3) ** 2 * LN3, rel=1e-6)
    flat = terms_of(model_config(**options, semantic_loss="focal", focal_gamma=0.0), weights)
    assert flat == pytest.approx(ce, rel=1e-6)


def test_emptiness_prior_reads_the_occupancy_density_by_hand():
    length = min(VoxelGrid().voxel_size)
    batch, rendered, predictions = tiny_case()
    # Occupancy probability 1/2 and 0: mean 1/4. The rendered density (all opaque) is not it.
    predictions["occupancy_density"] = torch.tensor([LN2 / length, 0.0]).view(1, 1, 2, 1, 1)
    predictions["density"] = torch.full((1, 1, 2, 1, 1), 50.0)
    config = model_config(emptiness_weight=2.0, lss_depth_weight=0.0)
    terms = loss_terms(predictions, rendered, batch, config, {}, 255, VoxelGrid())
    assert terms["emptiness"].item() == pytest.approx(2.0 * 0.25, rel=1e-6)
    assert "emptiness" not in terms_of(model_config(lss_depth_weight=0.0))


def test_emptiness_prior_clears_haze_and_spares_opaque_voxels():
    # d/dsigma of mean(1 - exp(-sigma L)) is L exp(-sigma L) / N.
    density = torch.tensor([0.1, 20.0], requires_grad=True)
    emptiness_loss(density, 0.4).backward()
    expected = [0.4 * math.exp(-0.1 * 0.4) / 2, 0.4 * math.exp(-20.0 * 0.4) / 2]
    assert density.grad.tolist() == pytest.approx(expected, rel=1e-4)  # float32
    assert density.grad[1] < 1e-3 * density.grad[0]
