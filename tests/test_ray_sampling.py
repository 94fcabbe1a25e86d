"""Weighted ray sampling against hand-computed weights and frequencies."""

import numpy as np
import pytest

from renderlss.data.ray_sampling import class_balance_weights, draw_rays, ray_weights

IGNORE = 255


def test_class_balance_by_hand():
    sem = np.array([0, 0, 0, 0, 2, IGNORE], dtype=np.uint8)
    w = class_balance_weights(sem, num_classes=3, alpha=0.5, ignore_index=IGNORE)
    # class 0: N=4 (max) -> exp(0) = 1; class 2: N=1 -> exp(0.5 * (4 - 1)); class 1 absent -> 0
    np.testing.assert_allclose(w, [1.0, 0.0, np.exp(1.5)])


def test_adjacent_and_dynamic_rules():
    sem = np.array([0, 1, 1, IGNORE, IGNORE], dtype=np.uint8)
    adjacent = np.array([False, False, True, False, True])
    class_w = np.array([1.0, 2.0])
    dynamic = np.array([False, True])
    w = ray_weights(sem, adjacent, class_w, dynamic, adjacent_weight=0.3, ignore_index=IGNORE)
    # dynamic class in an adjacent frame -> 0; unlabelled rays weigh 1 (x0.3 when adjacent)
    np.testing.assert_allclose(w, [1.0, 2.0, 0.0, 1.0, 0.3])


def test_draw_frequencies_follow_weights():
    rng = np.random.default_rng(0)
    weights = np.array([1.0, 3.0, 0.0])
    idx = draw_rays(weights, 40000, rng)  # more rays than candidates: with replacement
    freq = np.bincount(idx, minlength=3) / len(idx)
    np.testing.assert_allclose(freq, [0.25, 0.75, 0.0], atol=0.01)


def test_draw_without_replacement_when_enough():
    idx = draw_rays(np.ones(100), 60, np.random.default_rng(1))
    assert len(idx) == 60 and len(set(idx.tolist())) == 60


def test_draw_refuses_all_zero():
    with pytest.raises(ValueError, match="positive"):
        draw_rays(np.zeros(4), 2, np.random.default_rng(0))
