"""The lifting-quality metric (expected depth of the depth net per feature cell vs LiDAR)
against a hand computation, through the evaluation's scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from renderlss.configuration import from_dict
from renderlss.engine.evaluation import _depth_scorers, score_lifting_depth
from renderlss.engine.experiment import ExperimentConfig
from renderlss.eval.config import EvalConfig
from renderlss.eval.lifting_quality import expected_depth
from renderlss.models.config import DepthBinsConfig
from renderlss.targets.pixel_targets import PixelTargets

BINS = dict(mode="UD", d_min=1.0, d_max=3.0, num_bins=2)  # centres 1.5 and 2.5 m


def test_expected_depth_by_hand():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 0] = math.log(3.0)  # p = (3/4, 1/4): 1.5 * 3/4 + 2.5 / 4
    depth = expected_depth(logits, DepthBinsConfig(**BINS))
    torch.testing.assert_close(depth, torch.tensor([[[1.75, 2.0]]]))
    with pytest.raises(ValueError, match="bins"):
        expected_depth(torch.zeros(1, 3, 1, 1), DepthBinsConfig(**BINS))


def test_lifting_metric_by_hand():
    # One camera, an 8 x 24 input image (the original, unaugmented): three cells at stride 8.
    config = from_dict(
        ExperimentConfig,
        dict(
            data=dict(input_size=(8, 24), cameras=["CAM_FRONT"]),
            model=dict(neck=dict(out_stride=8), depth=dict(bins=BINS)),
        ),
    )
    # Cell 0: 2.0 and 2.2 m (target 2.0, no edge); cell 1: 1.5 and 2.5 m (target 1.5,
    # an edge: (2.5 - 1.5) / 1.5 > 0.5); cell 2: 5 m, beyond the bins, not scored.
    uv = np.array([[2.5, 1.5], [5.5, 3.5], [9.5, 2.5], [13.5, 6.5], [20.5, 4.5], [3.5, 6.5]])
    depth = np.array([2.0, 2.2, 1.5, 2.5, 5.0, 0.0], dtype=np.float32)  # the last: no depth
    lidar = PixelTargets(uv, depth, np.zeros(6, np.uint8), np.ones(6, np.float32))
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 0, 0, 0] = math.log(3.0)  # expected depths 1.75, 2.0, 2.0
    eval_config = EvalConfig(lifting_edge_radius=0)
    scorers = _depth_scorers(eval_config, "", "cpu", None)
    score_lifting_depth(
        scorers,
        logits,
        torch.eye(3)[None],
        {"token": "t0"},
        {"CAM_FRONT": lidar},
        config,
        eval_config,
    )
    overall, _, _ = scorers.lifting.report()
    near_edge, _, table = scorers.lifting_edge.report()
    # |1.75 - 2| / 2 = 1/8 and |2 - 1.5| / 1.5 = 1/3.
    assert overall["abs_rel"] == pytest.approx((1 / 8 + 1 / 3) / 2)
    assert overall["num_valid"] == 2
    assert near_edge["abs_rel"] == pytest.approx(1 / 3)
    assert near_edge["num_valid"] == 1 and "abs_rel" in table
