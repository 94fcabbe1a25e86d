"""Occ3D labels on a grid that nests the model grid: the crop and ratios by hand, pooling
against a per-voxel loop over random labels, and grids that do not nest."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from renderlss.data.label_grid import nest, pool_labels
from renderlss.geometry.grid import VoxelGrid

FREE, IGNORE = 5, 255  # classes 0..4
# 12 x 8 x 6 label voxels of 0.4 m; the model grid starts 2 voxels in along x and 1 along y
# and has voxels of 2 x 3 x 1 label voxels: 4 x 2 x 6.
LABEL_GRID = VoxelGrid((0.0, 0.0, -1.0, 4.8, 3.2, 1.4), (0.4, 0.4, 0.4))
MODEL_GRID = VoxelGrid((0.8, 0.4, -1.0, 4.0, 2.8, 1.4), (0.8, 1.2, 0.4))


def brute_force_pool(labels: dict, offset, ratio, shape) -> dict:
    """The pooling rule of docs/formats.md, one model voxel at a time."""
    out = {name: np.zeros(shape, np.uint8) for name in labels}
    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                block = tuple(
                    slice(o + n * r, o + (n + 1) * r) for o, n, r in zip(offset, (i, j, k), ratio)
                )
                sub = labels["semantics"][block].ravel().tolist()
                occupied = [v for v in sub if v not in (FREE, IGNORE)]
                if occupied:
                    counts = Counter(occupied)
                    top = max(counts.values())
                    value = min(c for c, n in counts.items() if n == top)
                elif all(v == FREE for v in sub):
                    value = FREE
                else:
                    value = IGNORE
                out["semantics"][i, j, k] = value
                for name in ("mask_lidar", "mask_camera"):
                    out[name][i, j, k] = any(labels[name][block].ravel())
    return out


def random_labels(rng: np.random.Generator, shape) -> dict:
    # Few classes and many free voxels: blocks with ties, all-free and free + ignore blocks.
    values = np.array([0, 1, 2, 3, 4, FREE, IGNORE], np.uint8)
    weights = np.array([1, 1, 1, 0.5, 0.5, 20, 1])
    semantics = rng.choice(values, size=shape, p=weights / weights.sum())
    return dict(
        semantics=semantics,
        mask_lidar=(rng.random(shape) < 0.15).astype(np.uint8),
        mask_camera=(rng.random(shape) < 0.3).astype(np.uint8),
    )


def test_nesting_by_hand():
    nesting = nest(LABEL_GRID, MODEL_GRID)
    assert nesting.ratio == (2, 3, 1)
    assert nesting.crop == (slice(2, 10), slice(1, 7), slice(0, 6))
    # Occ3D-nuScenes labels (200 x 200 x 16 at 0.4 m) around the demo grid (64 x 64 x 8 at
    # 0.8 m over +-25.6 m): (40 - 25.6) / 0.4 = 36 label voxels in, 2 per model voxel.
    occ3d = VoxelGrid()
    demo = VoxelGrid((-25.6, -25.6, -1.0, 25.6, 25.6, 5.4), (0.8, 0.8, 0.8))
    nesting = nest(occ3d, demo)
    assert nesting.ratio == (2, 2, 2)
    assert nesting.crop == (slice(36, 164), slice(36, 164), slice(0, 16))
    assert nest(occ3d, occ3d).is_identity and not nesting.is_identity


def test_pooling_matches_a_per_voxel_loop():
    rng = np.random.default_rng(0)
    nesting = nest(LABEL_GRID, MODEL_GRID)
    for _ in range(3):
        labels = random_labels(rng, LABEL_GRID.shape)
        got = pool_labels(labels, nesting, FREE, IGNORE, "test")
        want = brute_force_pool(labels, (2, 1, 0), (2, 3, 1), MODEL_GRID.shape)
        for name in want:
            assert got[name].shape == MODEL_GRID.shape and got[name].dtype == np.uint8
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        # Every case of the rule occurs.
        assert {0, 1, FREE, IGNORE} <= set(np.unique(got["semantics"]).tolist())


def test_pooling_rule_by_hand():
    grid = VoxelGrid((0.0, 0.0, 0.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    fine = VoxelGrid((0.0, 0.0, 0.0, 1.0, 1.0, 1.0), (0.5, 0.5, 1.0))
    nesting = nest(fine, grid)

    def pooled(block, masks=((0, 0), (0, 0))):
        labels = dict(
            semantics=np.array(block, np.uint8)[..., None],
            mask_lidar=np.array(masks, np.uint8)[..., None],
            mask_camera=np.zeros((2, 2, 1), np.uint8),
        )
        out = pool_labels(labels, nesting, FREE, IGNORE, "test")
        return int(out["semantics"][0, 0, 0]), int(out["mask_lidar"][0, 0, 0])

    assert pooled([[FREE, FREE], [FREE, 3]]) == (3, 0)  # one occupied sub-voxel wins
    assert pooled([[2, 2], [1, 1]]) == (1, 0)  # a tie: the lower class
    assert pooled([[2, 2], [1, IGNORE]]) == (2, 0)  # majority of the occupied ones
    assert pooled([[FREE, FREE], [FREE, FREE]]) == (FREE, 0)
    assert pooled([[FREE, IGNORE], [FREE, FREE]]) == (IGNORE, 0)
    assert pooled([[FREE, FREE], [FREE, FREE]], ((0, 0), (0, 1))) == (FREE, 1)  # any observed


def test_identity_keeps_the_labels():
    rng = np.random.default_rng(1)
    labels = random_labels(rng, LABEL_GRID.shape)
    out = pool_labels(labels, nest(LABEL_GRID, LABEL_GRID), FREE, IGNORE, "test")
    for name, array in labels.items():
        np.testing.assert_array_equal(out[name], array)


def test_values_that_are_no_class_are_named():
    labels = random_labels(np.random.default_rng(2), LABEL_GRID.shape)
    labels["semantics"][0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"labels\.npz: field 'semantics' holds values \[9\]"):
        pool_labels(labels, nest(LABEL_GRID, MODEL_GRID), FREE, IGNORE, "labels.npz")


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (VoxelGrid((0.8, 0.4, -1.0, 4.4, 2.8, 1.4), (0.6, 1.2, 0.4)), "whole multiples"),
        (VoxelGrid((0.0, 0.0, -1.0, 2.4, 1.6, 1.4), (0.2, 0.4, 0.4)), "whole multiples"),
        (VoxelGrid((0.6, 0.4, -1.0, 4.6, 2.8, 1.4), (0.8, 1.2, 0.4)), "not on a label voxel"),
        (VoxelGrid((0.8, 0.4, -1.0, 5.6, 2.8, 1.4), (0.8, 1.2, 0.4)), "reaches outside"),
        (VoxelGrid((-0.8, 0.4, -1.0, 2.4, 2.8, 1.4), (0.8, 1.2, 0.4)), "reaches outside"),
    ],
)
def test_grids_that_do_not_nest_are_refused(model, reason):
    with pytest.raises(ValueError, match=f"data.label_grid: the label grid .* {reason}"):
        nest(LABEL_GRID, model)
