"""Weighted ray sampling against hand-computed weights and frequencies."""

import numpy as np
import pytest

from renderlss.data.ray_sampling import (
    class_balance_weights,
    draw_reachable_rays,
    ray_weights,
    unlabelled_quota,
)

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


def everything(index: np.ndarray) -> np.ndarray:
    return np.ones(len(index), dtype=bool)


def nothing(index: np.ndarray) -> np.ndarray:
    return np.zeros(len(index), dtype=bool)


def not_two(index: np.ndarray) -> np.ndarray:
    return index != 2


def evens(index: np.ndarray) -> np.ndarray:
    return index % 2 == 0


def test_first_draw_follows_the_weights_of_reachable_candidates():
    rng = np.random.default_rng(0)
    weights = np.array([1.0, 3.0, 6.0, 0.0])
    first = [draw_reachable_rays(weights, 1, not_two, rng)[0] for _ in range(8000)]
    freq = np.bincount(first, minlength=4) / len(first)
    np.testing.assert_allclose(freq, [0.25, 0.75, 0.0, 0.0], atol=0.015)


def test_too_few_candidates_are_all_used_then_drawn_again_by_weight():
    rng = np.random.default_rng(0)
    idx = draw_reachable_rays(np.array([1.0, 3.0, 0.0]), 40000, everything, rng)
    assert len(idx) == 40000 and set(idx[:2].tolist()) == {0, 1}
    freq = np.bincount(idx, minlength=3) / len(idx)
    np.testing.assert_allclose(freq, [0.25, 0.75, 0.0], atol=0.01)


def test_draw_without_replacement_when_enough():
    idx = draw_reachable_rays(np.ones(100), 40, evens, np.random.default_rng(1))
    assert len(idx) == 40 and len(set(idx.tolist())) == 40 and (idx % 2 == 0).all()


def test_only_drawn_candidates_are_tested():
    tested = []

    def record(index: np.ndarray) -> np.ndarray:
        tested.append(len(index))
        return index % 4 != 0  # three in four reachable

    idx = draw_reachable_rays(np.ones(200_000), 100, record, np.random.default_rng(2))
    assert len(set(idx.tolist())) == 100 and (idx % 4 != 0).all()
    assert sum(tested) < 1000


def test_draw_refuses_all_zero_and_all_unreachable():
    with pytest.raises(ValueError, match="positive"):
        draw_reachable_rays(np.zeros(4), 2, everything, np.random.default_rng(0))
    with pytest.raises(ValueError, match="reaches"):
        draw_reachable_rays(np.ones(4), 2, nothing, np.random.default_rng(0))


def test_unlabelled_quota_by_hand():
    labelled = np.array([False, True, False, False, True, False])
    admit = unlabelled_quota(labelled, quota=2)
    # chunk 1 in draw order: candidates 0 (unlabelled), 1, 2 (unlabelled, but not ok)
    np.testing.assert_array_equal(
        admit(np.array([0, 1, 2]), np.array([True, True, False])), [True, True, False]
    )
    # chunk 2: one unlabelled place left, taken by 3; 5 is refused, 4 is labelled
    np.testing.assert_array_equal(
        admit(np.array([3, 5, 4]), np.array([True, True, True])), [True, False, True]
    )


def test_draw_with_a_quota_fills_the_rest_with_labelled_rays():
    labelled = np.arange(1000) < 100  # 100 labelled among 1000 candidates
    admit = unlabelled_quota(labelled, quota=50)
    idx = draw_reachable_rays(
        np.ones(1000), 150, lambda index: admit(index, everything(index)), np.random.default_rng(3)
    )
    assert len(set(idx.tolist())) == 150
    assert labelled[idx].sum() == 100 and (~labelled[idx]).sum() == 50
