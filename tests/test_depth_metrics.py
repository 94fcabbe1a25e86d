"""Depth metrics: a hand-computed example, a brute-force loop for both reductions, merging."""

import math

import numpy as np
import pytest
import torch

from renderlss.eval import DepthMetrics
from renderlss.eval.depth_metrics import METRIC_NAMES


def brute_force(preds, targets, min_depth, max_depth):
    """Both reductions by explicit loops over images and pixels (predictions clamped)."""
    pooled = {k: [] for k in ("abs_rel", "sq_rel", "sq", "sq_log", "d1", "d2", "d3")}
    per_image = []
    for pred_image, target_image in zip(preds, targets):
        image = {k: [] for k in pooled}
        for p, g in zip(pred_image.ravel(), target_image.ravel()):
            if not min_depth < g < max_depth:
                continue
            p = min(max(p, min_depth), max_depth)
            ratio = max(p / g, g / p)
            values = {
                "abs_rel": abs(p - g) / g,
                "sq_rel": (p - g) ** 2 / g,
                "sq": (p - g) ** 2,
                "sq_log": (math.log(p) - math.log(g)) ** 2,
                "d1": ratio < 1.25,
                "d2": ratio < 1.25**2,
                "d3": ratio < 1.25**3,
            }
            for k, v in values.items():
                image[k].append(v)
                pooled[k].append(v)
        if image["sq"]:
            per_image.append(summarise(image))
    per_image_mean = {k: np.mean([m[k] for m in per_image]) for k in METRIC_NAMES}
    return summarise(pooled), per_image_mean, len(per_image)


def summarise(values):
    m = {k: float(np.mean(v)) for k, v in values.items()}
    return {
        "abs_rel": m["abs_rel"],
        "sq_rel": m["sq_rel"],
        "rmse": math.sqrt(m["sq"]),
        "rmse_log": math.sqrt(m["sq_log"]),
        "delta1": m["d1"],
        "delta2": m["d2"],
        "delta3": m["d3"],
    }


def test_hand_computed_example():
    metric = DepthMetrics()
    # Valid: (1, 1), (3, 2), (2, 4); the target 0 is no measurement.
    metric.update(torch.tensor([[1.0, 3.0, 2.0, 7.0]]), torch.tensor([[1.0, 2.0, 4.0, 0.0]]))
    result = metric.compute()
    expected = {
        "abs_rel": (0 + 0.5 + 0.5) / 3,
        "sq_rel": (0 + 1 / 2 + 4 / 4) / 3,
        "rmse": math.sqrt((0 + 1 + 4) / 3),
        "rmse_log": math.sqrt((math.log(1.5) ** 2 + math.log(0.5) ** 2) / 3),
        "delta1": 1 / 3,  # ratios 1, 1.5, 2
        "delta2": 2 / 3,  # 1.5 < 1.5625 < 2
        "delta3": 2 / 3,  # 2 > 1.953125
    }
    for name, value in expected.items():
        assert result.pooled[name] == pytest.approx(value), name
        assert result.per_image[name] == pytest.approx(value), name  # one image
    assert result.num_valid == 3 and result.num_images == 1


def test_random_images_match_brute_force_with_caps_and_clamping():
    rng = np.random.default_rng(0)
    min_depth, max_depth = 0.5, 40.0
    metric = DepthMetrics(min_depth=min_depth, max_depth=max_depth)
    preds, targets = [], []
    for _ in range(3):
        target = rng.uniform(-5, 50, (4, 6, 5))
        target[rng.random(target.shape) < 0.2] = 0.0
        target[1] = 0.0  # an image without any valid pixel
        pred = target * rng.uniform(0.6, 1.6, target.shape) + rng.normal(0, 1, target.shape)
        pred[0, 0, 0] = 100.0  # clamped to max_depth
        pred[0, 0, 1] = -3.0  # clamped to min_depth
        metric.update(pred, target)
        preds.extend(pred)
        targets.extend(target)
    pooled, per_image, num_images = brute_force(preds, targets, min_depth, max_depth)
    result = metric.compute()
    for name in METRIC_NAMES:
        assert result.pooled[name] == pytest.approx(pooled[name], rel=1e-12), name
        assert result.per_image[name] == pytest.approx(per_image[name], rel=1e-12), name
    assert result.images_without_valid == 3
    assert result.num_images - result.images_without_valid == num_images == 9
    assert set(result.as_dict()) == {f"depth/{k}" for k in METRIC_NAMES} | {
        f"depth_per_image/{k}" for k in METRIC_NAMES
    }
    assert "per image" in result.table() and "3 images without a valid pixel" in result.table()


def test_mask_excludes_pixels():
    pred = torch.tensor([[1.0, 5.0]])
    target = torch.tensor([[1.0, 1.0]])
    metric = DepthMetrics()
    metric.update(pred, target, mask=torch.tensor([[True, False]]))
    assert metric.compute().pooled["abs_rel"] == 0.0
    assert metric.compute().num_valid == 1


def test_merge_equals_one_accumulator_and_empty_is_nan():
    rng = np.random.default_rng(1)
    batches = [(rng.uniform(1, 9, (2, 7)), rng.uniform(0, 9, (2, 7))) for _ in range(4)]
    whole, first, second = DepthMetrics(), DepthMetrics(), DepthMetrics()
    for i, (pred, target) in enumerate(batches):
        whole.update(pred, target)
        (first if i % 2 else second).update(pred, target)
    first.merge(second)
    torch.testing.assert_close(first.state(), whole.state())
    assert all(math.isnan(v) for v in DepthMetrics().compute().pooled.values())


def test_bad_input_is_named():
    metric = DepthMetrics()
    with pytest.raises(ValueError, match="cam-front/token-3: predicted depth is not finite"):
        metric.update(torch.tensor([[0.0]]), torch.tensor([[2.0]]), where="cam-front/token-3")
    with pytest.raises(ValueError, match="token-3: predicted depth \\(1, 2\\) and target"):
        metric.update(torch.ones(1, 2), torch.ones(1, 3), where="token-3")
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        DepthMetrics(min_depth=5.0, max_depth=1.0)
    clamped = DepthMetrics(min_depth=0.1)
    clamped.update(torch.tensor([[0.0]]), torch.tensor([[0.2]]))  # 0 is clamped to 0.1
    assert clamped.compute().pooled["abs_rel"] == pytest.approx(0.5)
