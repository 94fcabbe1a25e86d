"""Loss terms against hand-computed values and brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from renderlss.configuration import from_dict
from renderlss.models.config import DepthBinsConfig, LossConfig
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

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)


def test_silog_by_hand():
    pred = torch.tensor([2.0, 4.0, 1.0])
    target = torch.tensor([1.0, 4.0, 0.0])  # third ray has no depth
    # g = [ln 2, 0]: sqrt(ln2^2 / 2 - 0.85 * (ln2 / 2)^2) = ln2 * sqrt(0.2875)
    assert silog_loss(pred, target).item() == pytest.approx(0.3716587702469604, rel=1e-6)
    # weights [1, 3]: E[g] = ln2 / 4, E[g^2] = ln2^2 / 4 -> ln2 * sqrt(0.25 - 0.85 / 16)
    weighted = silog_loss(pred, target, weight=torch.tensor([1.0, 3.0, 5.0]))
    assert weighted.item() == pytest.approx(0.30755355162173936, rel=1e-6)
    # lam = 0: RMS log error sqrt(ln2^2 / 2).
    assert silog_loss(pred, target, lam=0.0).item() == pytest.approx(LN2 / math.sqrt(2), 1e-6)
    masked = silog_loss(pred, target, weight=torch.tensor([False, True, True]))
    assert masked.item() == pytest.approx(0.0, abs=1e-5)


def test_silog_scale_invariance_and_empty():
    target = torch.tensor([1.0, 5.0, 20.0])
    assert silog_loss(3.0 * target, target, lam=1.0).item() == pytest.approx(0.0, abs=1e-5)
    assert silog_loss(3.0 * target, target, lam=0.85).item() > 0.1
    pred = torch.tensor([0.0, 2.0], requires_grad=True)
    loss = silog_loss(pred, torch.zeros(2))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


def test_class_weights_by_hand():
    counts = np.array([100, 10, 0])
    # exp(0.1 * (100/100 - 1)) = 1, exp(0.1 * (100/10 - 1)) = e^0.9, absent -> clip 10.
    torch.testing.assert_close(
        class_weights_from_counts(counts, "exp", alpha=0.1, max_weight=10.0),
        torch.tensor([1.0, 2.45960311115695, 10.0]),
    )
    # e^(1 * 9) = 8103 clipped to 10.
    assert class_weights_from_counts(counts, "exp", alpha=1.0)[1].item() == pytest.approx(10.0)
    # 1 / ln(1.02 + 0.75), 1 / ln(1.02 + 0.25)
    torch.testing.assert_close(
        class_weights_from_counts(torch.tensor([3, 1]), "inv_log", offset=1.02),
        torch.tensor([1.7513762200058787, 4.1838045679260345]),
    )
    assert class_weights_from_counts([5, 7], "none").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="counts"):
        class_weights_from_counts([0, 0], "exp")
    with pytest.raises(ValueError, match="mode"):
        class_weights_from_counts([1, 2], "sqrt")


def test_semantic_ce_by_hand():
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0], [5.0, -5.0]])
    target = torch.tensor([0, 1, 255])  # CE: ln 2, ln 4, ignored
    assert semantic_ce_loss(logits, target).item() == pytest.approx((LN2 + LN4) / 2, 1e-6)
    weighted = semantic_ce_loss(logits, target, class_weights=torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx((LN2 + 3 * LN4) / 4, 1e-6)
    per_ray = semantic_ce_loss(logits, target, weight=torch.tensor([0.0, 1.0, 1.0]))
    assert per_ray.item() == pytest.approx(LN4, 1e-6)
    # Matches PyTorch's own weighted mean.
    reference = torch.nn.functional.cross_entropy(
        logits, target, weight=torch.tensor([1.0, 3.0]), ignore_index=255
    )
    assert weighted.item() == pytest.approx(reference.item(), 1e-6)
    with pytest.raises(ValueError, match="class 5"):
        semantic_ce_loss(logits, torch.tensor([0, 5, 255]))
    empty = semantic_ce_loss(logits.requires_grad_(), torch.full((3,), 255))
    empty.backward()
    assert empty.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_focal_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0], [5.0, -5.0]])
    target = torch.tensor([0, 1, 255])  # p_t = 1/2, 1/4; the third is ignored
    alpha = torch.tensor([1.0, 3.0])
    # -alpha (1 - p_t)^2 log p_t: (1/2)^2 ln 2 and 3 (3/4)^2 ln 4, over alpha's sum 4.
    focal = semantic_ce_loss(logits, target, alpha, focal_gamma=2.0)
    assert focal.item() == pytest.approx((LN2 / 4 + 3 * (9 / 16) * LN4) / 4, 1e-6)
    # gamma = 0 is the class-weighted CE, and gamma 0.5 lies between the two.
    ce = semantic_ce_loss(logits, target, alpha)
    assert semantic_ce_loss(logits, target, alpha, focal_gamma=0.0).item() == ce.item()
    half = (LN2 * 0.5**0.5 + 3 * 0.75**0.5 * LN4) / 4
    assert semantic_ce_loss(logits, target, alpha, focal_gamma=0.5).item() == pytest.approx(half)
    # A certain, correct ray has a finite gradient for any gamma.
    sure = torch.tensor([[40.0, -40.0]], requires_grad=True)
    semantic_ce_loss(sure, torch.tensor([0]), focal_gamma=0.5).backward()
    assert torch.isfinite(sure.grad).all()
    # The 3D term passes gamma on: voxel 1 of softmax (1, 1, 2) / 4 has p_t = 1/2.
    voxel_logits = torch.zeros(1, 3, 2, 1, 1)
    voxel_logits[0, 2, 1, 0, 0] = LN2
    semantics = torch.tensor([2, 2]).reshape(1, 2, 1, 1)  # p_t = 1/3, 1/2
    voxel_focal = occupancy_ce_loss(voxel_logits, semantics, focal_gamma=2.0).item()
    assert voxel_focal == pytest.approx(((2 / 3) ** 2 * LN3 + 0.25 * LN2) / 2, 1e-6)
    with pytest.raises(ValueError, match="gamma"):
        semantic_ce_loss(logits, target, focal_gamma=-1.0)


def test_occupancy_ce_with_camera_mask():
    logits = torch.zeros(1, 3, 2, 1, 1)
    logits[0, 2, 1, 0, 0] = LN2  # voxel 1: softmax (1, 1, 2) / 4
    semantics = torch.tensor([2, 0]).reshape(1, 2, 1, 1)  # free (2), class 0
    mask = torch.tensor([1, 0], dtype=torch.uint8).reshape(1, 2, 1, 1)
    assert occupancy_ce_loss(logits, semantics, mask).item() == pytest.approx(LN3, 1e-6)
    assert occupancy_ce_loss(logits, semantics).item() == pytest.approx((LN3 + LN4) / 2, 1e-6)


def brute_force_distortion(w: torch.Tensor, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Double loop over sample pairs of each ray, mean over rays."""
    losses = []
    for r in range(w.shape[0]):
        total = w.new_zeros(())
        for i in range(w.shape[1]):
            mi = 0.5 * (s[r, i] + e[r, i])
            for j in range(w.shape[1]):
                mj = 0.5 * (s[r, j] + e[r, j])
                total = total + w[r, i] * w[r, j] * torch.abs(mi - mj)
            total = total + w[r, i] ** 2 * (e[r, i] - s[r, i]) / 3.0
        losses.append(total)
    return torch.stack(losses).mean()


def test_distortion_by_hand():
    # Intervals [0, 1], [1, 3], weights 0.5, 0.25: 2 * 0.5 * 0.25 * |0.5 - 2| + (0.25 * 1 +
    # 0.0625 * 2) / 3 = 0.375 + 0.125.
    w = torch.tensor([[0.5, 0.25]])
    loss = distortion_loss(w, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 3.0]]))
    assert loss.item() == pytest.approx(0.5, 1e-6)


def test_distortion_matches_brute_force_with_gradients():
    gen = torch.Generator().manual_seed(3)
    edges = torch.cumsum(torch.rand(4, 7, generator=gen, dtype=torch.float64) + 0.1, dim=-1)
    starts, ends = edges[:, :-1], edges[:, 1:]
    w1 = torch.rand(4, 6, generator=gen, dtype=torch.float64).requires_grad_()
    w2 = w1.detach().clone().requires_grad_()
    fast = distortion_loss(w1, starts, ends)
    slow = brute_force_distortion(w2, starts, ends)
    torch.testing.assert_close(fast.double(), slow, rtol=1e-6, atol=1e-7)
    fast.backward()
    slow.backward()
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-5, atol=1e-6)
    # Ray weights select rays: only ray 2.
    only = distortion_loss(w1, starts, ends, weight=torch.tensor([0.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(
        only.double(), brute_force_distortion(w1[2:3], starts[2:3], ends[2:3]), rtol=1e-6, atol=0
    )


def test_opacity_entropy_by_hand():
    assert opacity_entropy_loss(torch.tensor([0.5])).item() == pytest.approx(LN2, 1e-6)
    # opacity 1 has (nearly) no entropy: mean (ln 2 + 0) / 2.
    assert opacity_entropy_loss(torch.tensor([0.5, 1.0])).item() == pytest.approx(LN2 / 2, 1e-4)
    # 0.25: -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351446
    value = opacity_entropy_loss(torch.tensor([0.25, 0.5]), weight=torch.tensor([1.0, 0.0]))
    assert value.item() == pytest.approx(0.5623351446188083, 1e-6)


def test_downsample_min_depth_by_hand():
    depth = torch.tensor(
        [
            [0.0, 5.0, 0.0, 0.0],
            [3.0, 4.0, 0.0, 0.0],
            [9.0, 0.0, 2.0, 7.0],
            [0.0, 0.0, 0.0, 1.5],
        ]
    ).unsqueeze(0)
    expected = torch.tensor([[[3.0, 0.0], [9.0, 1.5]]])
    torch.testing.assert_close(downsample_min_depth(depth, 2), expected)
    # 3x3 at stride 2: the last row/column are cells half outside the image.
    odd = torch.tensor([[[0.0, 2.0, 6.0], [1.0, 0.0, 0.0], [0.0, 0.0, 4.0]]])
    torch.testing.assert_close(
        downsample_min_depth(odd, 2), torch.tensor([[[1.0, 6.0], [0.0, 4.0]]])
    )
    with pytest.raises(ValueError, match="larger than"):
        downsample_min_depth(odd, 2, size=(1, 1))


def test_lss_depth_loss_by_hand():
    bins = DepthBinsConfig(mode="UD", d_min=1.0, d_max=3.0, num_bins=2)  # [1, 2), [2, 3)
    depth = torch.tensor([[[0.0, 2.5, 0.0, 0.0], [2.7, 0.0, 0.0, 0.0]]])  # cells: 2.5, none
    logits = torch.zeros(1, 2, 1, 2)
    # Uniform probabilities: BCE per bin ln 2, summed over 2 bins; CE ln 2.
    assert lss_depth_loss(logits, depth, bins, 2, "bce").item() == pytest.approx(2 * LN2, 1e-6)
    assert lss_depth_loss(logits, depth, bins, 2, "ce").item() == pytest.approx(LN2, 1e-6)
    # p = (3/4, 1/4), true bin 1: BCE = -ln(1 - 3/4) - ln(1/4) = 2 ln 4; CE = ln 4.
    logits[0, 0] = LN3
    assert lss_depth_loss(logits, depth, bins, 2, "bce").item() == pytest.approx(2 * LN4, 1e-6)
    assert lss_depth_loss(logits, depth, bins, 2, "ce").item() == pytest.approx(LN4, 1e-6)
    # Depths outside [d_min, d_max) do not count.
    far = torch.full((1, 2, 4), 9.0).requires_grad_()
    zero = lss_depth_loss(logits.requires_grad_(), far, bins, 2)
    zero.backward()
    assert zero.item() == 0.0 and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="bins"):
        lss_depth_loss(torch.zeros(1, 3, 1, 2), depth, bins, 2)


def test_loss_config_defaults_and_validation():
    cfg = LossConfig()
    assert (cfg.silog_lambda, cfg.distortion_weight, cfg.entropy_weight) == (0.85, 0.01, 0.01)
    assert cfg.lss_depth_weight == 0.05 and cfg.occ3d_weight == 0.0
    assert (cfg.semantic_loss, cfg.depth_edge_weight, cfg.depth_edge_rendered) == (
        "ce",
        1.0,
        False,
    )
    for key, value in (
        ("focal_gamma", -1.0),
        ("depth_edge_weight", 0.0),
        ("depth_edge_threshold", 0.0),
        ("depth_edge_radius", -1),
    ):
        with pytest.raises(ValueError, match=f"loss.{key}"):
            from_dict(LossConfig, {key: value}, "loss")
    with pytest.raises(ValueError, match="loss.distortion_weight"):
        from_dict(LossConfig, {"distortion_weight": -1.0}, "loss")
