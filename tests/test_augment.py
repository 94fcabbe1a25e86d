"""Image and BEV augmentation: hand-computed matrices, a bright dot followed through the image
warp, and voxel labels checked against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from renderlss.data.augment import (
    BevAugParams,
    ImageAugParams,
    apply_bev_aug_to_voxels,
    apply_image_aug,
    bev_aug_matrix,
    image_aug_matrix,
    sample_bev_aug,
    sample_image_aug,
)
from renderlss.data.config import BevAugConfig, ImageAugConfig
from renderlss.geometry.grid import VoxelGrid

GRID = VoxelGrid((-4.0, -4.0, -1.0, 4.0, 4.0, 1.4), (0.4, 0.4, 0.4))  # 20 x 20 x 6


def test_eval_params_hand_computed():
    # 1600x900 -> width 704: factor 0.44, 704x396; mean bottom fraction 0.11 removes the
    # bottom int(0.89 * 396) = 352 ... keeps rows [96, 352).
    params = sample_image_aug((900, 1600), (256, 704), ImageAugConfig(), None)
    assert params == ImageAugParams((396, 704), (0, 96), False, 0.0)
    matrix = image_aug_matrix(params, (900, 1600), (256, 704))
    np.testing.assert_allclose(matrix, [[0.44, 0, 0], [0, 0.44, -96], [0, 0, 1]], atol=1e-12)


def test_matrix_hand_computed_flip_and_rotation():
    params = ImageAugParams((12, 16), (2, 3), True, 0.0)
    matrix = image_aug_matrix(params, (24, 32), (10, 10))
    # u -> 10 - (0.5 u - 2), v -> 0.5 v - 3
    np.testing.assert_allclose(matrix @ [8.0, 10.0, 1.0], [10 - 2.0, 2.0, 1.0])
    turn = ImageAugParams((10, 10), (0, 0), False, 90.0)
    # A quarter turn counter-clockwise on screen: the point right of the centre goes up.
    np.testing.assert_allclose(
        image_aug_matrix(turn, (10, 10), (10, 10)) @ [8, 5, 1], [5, 2, 1], atol=1e-12
    )


def _blob(height: int, width: int, u: float, v: float, sigma: float = 1.5) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width] + 0.5
    value = np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * sigma**2))
    return np.repeat((255 * value).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(image: np.ndarray) -> np.ndarray:
    weight = image[..., 0].astype(np.float64)
    weight[weight < 0.2 * weight.max()] = 0  # ignore the faint tail cut by the borders
    rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    return np.array([(weight * cols).sum(), (weight * rows).sum()]) / weight.sum()


@pytest.mark.parametrize("seed", range(12))
def test_projected_point_lands_on_the_augmented_dot(seed):
    rng = np.random.default_rng(seed)
    height, width, input_size = 90, 160, (40, 72)
    u, v = rng.uniform(50, 110), rng.uniform(25, 55)
    cfg = ImageAugConfig(rotate_range=(-20.0, 20.0), flip_prob=0.5)
    params = sample_image_aug((height, width), input_size, cfg, rng)
    matrix = image_aug_matrix(params, (height, width), input_size)
    expected = (matrix @ [u, v, 1.0])[:2]
    margin = 6.0  # the dot must be whole in the output for its centroid to be meaningful
    assert margin < expected[0] < input_size[1] - margin, expected
    assert margin < expected[1] < input_size[0] - margin, expected
    out = apply_image_aug(_blob(height, width, u, v, sigma=4.0), params, input_size)
    assert out.shape == (*input_size, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(_centroid(out), expected, atol=0.15)


def test_flip_and_rotation_draws_are_exercised():
    cfg = ImageAugConfig(rotate_range=(-20.0, 20.0), flip_prob=0.5)
    draws = [
        sample_image_aug((90, 160), (40, 72), cfg, np.random.default_rng(s)) for s in range(12)
    ]
    assert any(d.flip for d in draws) and not all(d.flip for d in draws)
    assert all(-20 <= d.rotate_deg <= 20 for d in draws) and len({d.crop for d in draws}) > 1


def test_eval_warp_is_a_plain_resize_and_crop():
    image = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    params = ImageAugParams((24, 32), (4, 5), False, 0.0)
    out = apply_image_aug(image, params, (10, 20))
    np.testing.assert_array_equal(out, image[5:15, 4:24])


def test_window_outside_the_image_is_black():
    image = np.full((8, 8, 3), 200, dtype=np.uint8)
    out = apply_image_aug(image, ImageAugParams((8, 8), (0, -2), False, 0.0), (10, 8))
    assert np.all(out[:2] == 0) and np.all(out[2:] == 200)


def test_sampling_is_reproducible():
    cfg, bev = ImageAugConfig(), BevAugConfig()
    a = sample_image_aug((900, 1600), (256, 704), cfg, np.random.default_rng([0, 1, 2]))
    b = sample_image_aug((900, 1600), (256, 704), cfg, np.random.default_rng([0, 1, 2]))
    assert a == b
    assert sample_bev_aug(bev, None) == BevAugParams(0.0, False, False)
    assert sample_bev_aug(bev, np.random.default_rng(3)) == sample_bev_aug(
        bev, np.random.default_rng(3)
    )


def test_bev_matrix_hand_computed():
    turn = bev_aug_matrix(BevAugParams(90.0, False, False), GRID)
    np.testing.assert_allclose(turn @ [1, 0, 0.5, 1], [0, 1, 0.5, 1], atol=1e-12)
    flips = bev_aug_matrix(BevAugParams(0.0, True, True), GRID)
    np.testing.assert_allclose(flips @ [1, 2, 0.5, 1], [-1, -2, 0.5, 1], atol=1e-12)
    shifted = VoxelGrid((0.0, -4.0, -1.0, 8.0, 4.0, 1.4), (0.4, 0.4, 0.4))
    # About the grid centre: x in [0, 8] maps to 8 - x.
    np.testing.assert_allclose(
        bev_aug_matrix(BevAugParams(0.0, True, False), shifted) @ [1, 2, 0, 1], [7, 2, 0, 1]
    )
    both = bev_aug_matrix(BevAugParams(90.0, True, False), GRID)  # rotate, then flip x
    np.testing.assert_allclose(both @ [1, 0, 0, 1], [0, 1, 0, 1], atol=1e-12)
    np.testing.assert_allclose(both @ [0, 1, 0, 1], [1, 0, 0, 1], atol=1e-12)


def _labels(rng: np.random.Generator) -> np.ndarray:
    """Random labels constant over 4 x 4 voxel blocks in x, y."""
    blocks = rng.integers(0, 17, size=(5, 5, GRID.shape[2]), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)


def test_flips_are_index_flips():
    labels = _labels(np.random.default_rng(0))
    out = apply_bev_aug_to_voxels(labels, BevAugParams(0.0, True, False), GRID, 17)
    np.testing.assert_array_equal(out, labels[::-1])
    out = apply_bev_aug_to_voxels(labels, BevAugParams(0.0, True, True), GRID, 17)
    np.testing.assert_array_equal(out, labels[::-1, ::-1])


def test_rotation_matches_brute_force_lookup():
    labels = np.random.default_rng(1).integers(0, 17, size=GRID.shape, dtype=np.uint8)
    params = BevAugParams(30.0, False, True)
    out = apply_bev_aug_to_voxels(labels, params, GRID, 17)
    inverse = np.linalg.inv(bev_aug_matrix(params, GRID))
    nx, ny, nz = GRID.shape
    filled = 0
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                centre = GRID.lower + (np.array([i, j, k]) + 0.5) * GRID.size
                source = (inverse @ [*centre, 1.0])[:3]
                idx = np.floor((source - GRID.lower) / GRID.size).astype(int)
                inside = np.all((idx >= 0) & (idx < GRID.shape))
                expected = labels[tuple(idx)] if inside else 17
                filled += not inside
                assert out[i, j, k] == expected, (i, j, k)
    assert filled > 0  # the corners of a turned square come from outside


@pytest.mark.parametrize("seed", range(4))
def test_ego_point_keeps_its_label(seed):
    rng = np.random.default_rng(seed)
    labels = _labels(rng)
    params = sample_bev_aug(BevAugConfig(rotate_range=(-45, 45)), rng)
    out = apply_bev_aug_to_voxels(labels, params, GRID, 255)
    matrix = bev_aug_matrix(params, GRID)
    # Points well inside a 1.6 m block, so nearest-voxel resampling cannot cross an edge.
    block = 1.6
    points = rng.uniform(GRID.lower, GRID.upper, size=(4000, 3))
    offset = np.mod(points[:, :2] - GRID.lower[:2], block)
    points = points[np.all((offset > 0.45) & (offset < block - 0.45), axis=1)]
    moved = points @ matrix[:3, :3].T + matrix[:3, 3]
    before_idx, _ = GRID.point_to_index(points)
    after_idx, inside = GRID.point_to_index(moved)
    assert inside.sum() > 200
    before = labels[tuple(before_idx[inside].T)]
    after = out[tuple(after_idx[inside].T)]
    np.testing.assert_array_equal(after, before)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not match grid shape"):
        apply_bev_aug_to_voxels(np.zeros((4, 4, 4)), BevAugParams(0.0, False, False), GRID, 17)
