"""The images-blind depth prior and the median signed error, against hand values and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from renderlss.eval.depth_metrics import SignedErrorMedian
from renderlss.eval.depth_prior import RowMedianDepthPrior


def test_row_band_medians_by_hand():
    prior = RowMedianDepthPrior(bands=2)
    # A 100-row image: rows < 50 are band 0, the rest band 1.
    prior.add(
        "CAM_FRONT", 100, np.array([10.0, 20.0, 30.0, 60.0, 70.0]), np.array([30, 40, 50, 5, 7])
    )
    prior.add("CAM_FRONT", 100, np.array([99.5, 40.0]), np.array([9.0, 0.0]))  # 0: no depth
    prior.add("CAM_BACK", 100, np.array([80.0]), np.array([3.0]))
    prior.finish()
    front = prior.predict("CAM_FRONT", 100, np.array([0.0, 49.9, 50.0, 100.0]))
    assert front.tolist() == [40.0, 40.0, 7.0, 7.0]
    # CAM_BACK has no band-0 target: its camera median; an unknown camera: the overall one.
    assert prior.predict("CAM_BACK", 100, np.array([10.0])).tolist() == [3.0]
    assert prior.predict("CAM_LEFT", 100, np.array([10.0])).tolist() == [9.0]
    # Bands are fractions of the height: the same band at another resolution.
    assert prior.predict("CAM_FRONT", 200, np.array([120.0])).tolist() == [7.0]


def test_prior_needs_targets_and_bands():
    with pytest.raises(ValueError, match="bands"):
        RowMedianDepthPrior(bands=0)
    with pytest.raises(ValueError, match="no training target"):
        RowMedianDepthPrior(bands=4).finish()


def test_signed_error_median_against_numpy():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(5001, generator=generator, dtype=torch.float64) * 40 + 1
    error = torch.randn(5001, generator=generator, dtype=torch.float64) * 0.2 - 0.21
    pred = target * (1 + error)
    median = SignedErrorMedian(min_depth=0.1, max_depth=80.0)
    median.update(pred[:2000], target[:2000])
    other = SignedErrorMedian(min_depth=0.1, max_depth=80.0)
    other.update(pred[2000:], target[2000:])
    median.merge(other)
    clamped = pred.clamp(0.1, 80.0)
    expected = float(np.median(((clamped - target) / target).numpy()))
    assert median.compute() == pytest.approx(expected, abs=2e-3)
    assert SignedErrorMedian().compute() != SignedErrorMedian().compute()  # NaN when empty
