"""RayIoU: the voxel traversal against hand cases and a brute-force slab test over every
voxel, SparseOcc's ray pattern and origin choice, and ray counting against per-ray loops."""

import math

import numpy as np
import pytest
import torch

from renderlss.eval import (
    RayIoU,
    RayIoUConfig,
    cast_query_rays,
    first_occupied_voxel,
    lidar_like_directions,
    select_query_origins,
    sensor_origins_in_frame,
)
from renderlss.eval.ray_iou import lidar_like_pitches
from renderlss.geometry import pose_matrix, yaw_to_quaternion
from renderlss.geometry.grid import VoxelGrid

# Anisotropic voxels so that metres and voxel units cannot be confused.
GRID = VoxelGrid((-2.0, -1.0, 0.0, 2.0, 2.0, 2.0), (0.5, 1.0, 0.4))  # shape (8, 3, 5)
NAMES = ["a", "b", "c"]  # label 3 = free
FREE = 3


def brute_force_first_hit(occupied, origin, direction, grid):
    """First occupied voxel by intersecting the ray with the box of every occupied voxel.

    Returns:
        (voxel index [3] or [-1, -1, -1], entry distance, exit distance); inf when no hit.
    """
    direction = direction / np.linalg.norm(direction)
    index = np.argwhere(occupied)  # [V, 3]
    lo = grid.lower + index * grid.size
    hi = lo + grid.size
    moving = direction != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t_a, t_b = (lo - origin) / direction, (hi - origin) / direction
    t_near = np.where(moving, np.minimum(t_a, t_b), -math.inf)
    t_far = np.where(moving, np.maximum(t_a, t_b), math.inf)
    in_slab = (origin >= lo) & (origin < hi)
    crosses = np.all(moving | in_slab, axis=1)
    enter = np.maximum(t_near.max(axis=1), 0.0)
    leave = t_far.min(axis=1)
    candidates = np.flatnonzero(crosses & (leave > enter))
    if len(candidates) == 0:
        return np.array([-1, -1, -1]), math.inf, math.inf
    best = candidates[np.argmin(enter[candidates])]
    return index[best], enter[best], leave[best]


def test_hand_cases_of_the_traversal():
    occupied = torch.zeros(GRID.shape, dtype=torch.bool)
    occupied[6, 1, 2] = True  # x in [1, 1.5], y in [0, 1], z in [0.8, 1.2]
    occupied[1, 1, 2] = True  # x in [-1.5, -1]
    origins = torch.tensor(
        [
            [-1.75, 0.5, 1.0],  # centre of voxel (0, 1, 2): +x reaches (1, 1, 2) first
            [-1.75, 0.5, 1.0],  # same origin, -x: leaves the grid, no hit
            [-5.0, 0.5, 1.0],  # outside the grid, enters through the x = -2 face
            [1.2, 0.5, 1.0],  # inside an occupied voxel: hit at distance 0
            [0.25, 5.0, 1.0],  # outside, moving -y through an empty column
            [0.0, 0.5, 3.0],  # above the grid, moving up: never enters
        ],
        dtype=torch.float64,
    )
    directions = torch.tensor(
        [[2.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0], [0, 0, 1.0]]
    )
    hits = first_occupied_voxel(occupied, origins, directions, GRID)
    assert hits.voxel.tolist() == [[1, 1, 2], [-1] * 3, [1, 1, 2], [6, 1, 2], [-1] * 3, [-1] * 3]
    expected_entry = [0.25, math.inf, 3.5, 0.0, math.inf, math.inf]
    expected_exit = [0.75, math.inf, 4.0, 1.0 - 0.8, math.inf, math.inf]
    np.testing.assert_allclose(hits.entry.numpy(), expected_entry, atol=1e-12)
    np.testing.assert_allclose(hits.exit.numpy(), expected_exit, atol=1e-12)


def test_diagonal_hand_case():
    # From (0, 0, 0) along (1, 1, 1)/sqrt(3) on a unit grid the ray runs through the voxel
    # diagonal; a wall at x index 2 is entered at x = 2, i.e. t = 2 * sqrt(3).
    grid = VoxelGrid((0.0, 0.0, 0.0, 4.0, 4.0, 4.0), (1.0, 1.0, 1.0))
    occupied = torch.zeros(grid.shape, dtype=torch.bool)
    occupied[2] = True
    hits = first_occupied_voxel(
        occupied, torch.tensor([[0.1, 0.0, 0.0]]), torch.tensor([[1.0, 1.1, 1.2]]), grid
    )
    direction = np.array([1.0, 1.1, 1.2]) / np.linalg.norm([1.0, 1.1, 1.2])
    t_wall = 1.9 / direction[0]
    point = np.array([0.1, 0.0, 0.0]) + t_wall * direction
    assert hits.voxel.tolist() == [[2, *np.floor(point[1:]).astype(int).tolist()]]
    assert float(hits.entry[0]) == pytest.approx(t_wall)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_traversal_matches_brute_force_on_random_volumes(seed):
    rng = np.random.default_rng(seed)
    occupied = rng.random(GRID.shape) < 0.15
    num_rays = 150
    # Origins inside and around the grid, some axis-aligned directions.
    origins = rng.uniform(GRID.lower - 0.5, GRID.upper + 0.5, (num_rays, 3))
    directions = rng.normal(size=(num_rays, 3))
    directions[np.arange(10), rng.integers(0, 3, 10)] = 0.0
    hits = first_occupied_voxel(
        torch.from_numpy(occupied), torch.from_numpy(origins), torch.from_numpy(directions), GRID
    )
    num_hits = 0
    for r in range(num_rays):
        index, enter, leave = brute_force_first_hit(occupied, origins[r], directions[r], GRID)
        assert hits.voxel[r].tolist() == list(index), r
        if math.isfinite(enter):
            num_hits += 1
            assert float(hits.entry[r]) == pytest.approx(enter, abs=1e-9)
            assert float(hits.exit[r]) == pytest.approx(leave, abs=1e-9)
        else:
            assert math.isinf(float(hits.entry[r]))
    assert 15 < num_hits < num_rays  # the test sees both outcomes


def test_cast_query_rays_is_origin_major_with_classes_and_misses():
    semantics = torch.full(GRID.shape, FREE)
    semantics[7, :, :] = 2  # wall at x in [1.5, 2]
    origins = torch.tensor([[-1.75, 0.5, 1.0], [0.25, 0.5, 1.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    labels, distance = cast_query_rays(semantics, origins, directions, GRID, FREE, "entry")
    assert labels.tolist() == [2, FREE, 2, FREE]
    np.testing.assert_allclose(distance.numpy(), [3.25, math.inf, 1.25, math.inf])
    _, exit_distance = cast_query_rays(semantics, origins, directions, GRID, FREE, "exit")
    np.testing.assert_allclose(exit_distance.numpy(), [3.75, math.inf, 1.75, math.inf])


def test_sparseocc_ray_pattern():
    pitches = lidar_like_pitches(10, 0.21)
    np.testing.assert_allclose(
        pitches[:3], [-math.pi / 4, math.atan(2) - math.pi / 2, -(math.pi / 2 - math.atan(3))]
    )
    gaps = np.diff(pitches[9:])
    np.testing.assert_allclose(gaps, gaps[0])
    assert gaps[0] == pytest.approx(math.atan(10) - math.atan(9))
    assert pitches[-2] < 0.21 <= pitches[-1]
    directions = lidar_like_directions(RayIoUConfig())
    assert directions.shape == (len(pitches) * 360, 3)
    np.testing.assert_allclose(directions.norm(dim=-1).numpy(), 1.0)
    # Pitch-major: the first 360 rays share the steepest pitch; azimuth 90 deg points +y.
    np.testing.assert_allclose(
        directions[90].numpy(), [0.0, math.cos(math.pi / 4), -math.sin(math.pi / 4)], atol=1e-12
    )


def test_origin_selection_and_sensor_origins():
    grid = VoxelGrid()
    inside = np.stack([np.linspace(-30, 30, 10), np.zeros(10), np.full(10, 1.8)], axis=1)
    candidates = np.concatenate([[[39.5, 0.0, 1.8], [0.0, -39.2, 1.8]], inside])
    picked = select_query_origins(candidates, grid, margin=1.0, max_origins=8)
    # round(linspace(0, 9, 8)) = 0, 1, 3, 4, 5, 6, 8, 9
    np.testing.assert_allclose(picked.numpy(), inside[[0, 1, 3, 4, 5, 6, 8, 9]])
    assert len(select_query_origins(inside[:3], grid, 1.0, 8)) == 3

    ego_to_global = pose_matrix(yaw_to_quaternion(math.pi / 2), [100.0, 50.0, 0.0])
    lidar_a = pose_matrix([1, 0, 0, 0], [100.0, 51.0, 2.0])  # 1 m ahead (ego x = global y)
    lidar_b = pose_matrix([1, 0, 0, 0], [98.0, 50.0, 2.0])  # 2 m to the left (ego +y)
    origins = sensor_origins_in_frame(np.linalg.inv(ego_to_global), np.stack([lidar_a, lidar_b]))
    np.testing.assert_allclose(origins, [[1.0, 0.0, 2.0], [0.0, 2.0, 2.0]], atol=1e-12)


def brute_force_counts(pred_labels, pred_dist, gt_labels, gt_dist, num_classes, thresholds):
    """SparseOcc's counting, ray by ray."""
    gt_count, pred_count = np.zeros(num_classes), np.zeros(num_classes)
    tp = np.zeros((len(thresholds), num_classes))
    for p, dp, g, dg in zip(pred_labels, pred_dist, gt_labels, gt_dist):
        if g == num_classes:  # the ground-truth ray hits nothing: not scored
            continue
        gt_count[g] += 1
        if p < num_classes:
            pred_count[p] += 1
        for j, tau in enumerate(thresholds):
            if p == g and abs(dp - dg) < tau:
                tp[j, g] += 1
    with np.errstate(invalid="ignore"):
        return tp / (gt_count + pred_count - tp)


def test_counting_matches_per_ray_loop_and_merge():
    rng = np.random.default_rng(4)
    config = RayIoUConfig(thresholds=(0.5, 1.0, 2.0))
    whole = RayIoU(NAMES, GRID, config)
    halves = [RayIoU(NAMES, GRID, config), RayIoU(NAMES, GRID, config)]
    batches = []
    for i in range(4):
        gt = rng.integers(0, 4, 300)
        gt[gt == 2] = 0  # class c is never in the ground truth ...
        pred = np.where(rng.random(300) < 0.7, gt, rng.integers(0, 4, 300))
        pred[pred == 2] = 3  # ... nor predicted -> NaN
        gt_dist, pred_dist = rng.random(300) * 10, rng.random(300) * 10
        batch = [torch.from_numpy(v) for v in (pred, pred_dist, gt, gt_dist)]
        batches.append(batch)
        whole.update_hits(*batch)
        halves[i % 2].update_hits(*batch)
    cat = [np.concatenate([b[k].numpy() for b in batches]) for k in range(4)]
    expected = brute_force_counts(*cat, 3, config.thresholds)
    result = whole.compute()
    np.testing.assert_allclose(result.iou, expected, equal_nan=True)
    assert np.isnan(result.iou[:, 2]).all()
    np.testing.assert_allclose(result.miou_per_threshold, np.nanmean(expected, axis=1))
    assert result.ray_iou == pytest.approx(np.nanmean(expected))
    assert result.num_rays == int((cat[2] != 3).sum())
    halves[0].merge(halves[1])
    torch.testing.assert_close(halves[0].state(), whole.state())


def test_hand_counted_rays():
    # Ground truth a, a, b, free; prediction a (0.5 m off), b, b (3 m off), a.
    metric = RayIoU(NAMES, GRID, RayIoUConfig(thresholds=(1.0, 4.0)))
    metric.update_hits(
        torch.tensor([0, 1, 1, 0]),
        torch.tensor([10.5, 5.0, 8.0, 1.0]),
        torch.tensor([0, 0, 1, FREE]),
        torch.tensor([10.0, 5.0, 5.0, math.inf]),
    )
    result = metric.compute()
    # a: N_gt 2, N_pred 1, TP 1 -> 1/2 at both.  b: N_gt 1, N_pred 2, TP 0 at 1 m, 1 at 4 m.
    np.testing.assert_allclose(result.iou[:, :2], [[0.5, 0.0], [0.5, 0.5]])
    assert result.ray_iou == pytest.approx((0.25 + 0.5) / 2)
    assert "RayIoU@1" in result.table() and result.as_dict()["RayIoU@4"] == pytest.approx(0.5)


def test_update_casts_both_volumes_like_brute_force():
    grid = VoxelGrid((-3.0, -3.0, -1.0, 3.0, 3.0, 2.0), (1.0, 1.0, 0.5))
    config = RayIoUConfig(azimuth_step_deg=30.0, origin_margin=0.5, hit_distance="entry")
    rng = np.random.default_rng(5)
    target = np.full(grid.shape, FREE)
    target[:, :, 0] = 0  # ground
    target[rng.random(grid.shape) < 0.1] = 1
    target[0, :, :] = 2  # a wall behind
    pred = target.copy()
    pred[rng.random(grid.shape) < 0.1] = FREE
    pred[rng.random(grid.shape) < 0.05] = 1
    origins = np.array([[0.3, 0.2, 0.6], [-1.2, 0.7, 0.9], [2.8, 0.0, 0.5]])  # last: dropped
    metric = RayIoU(NAMES, grid, config)
    metric.update(pred, target, origins, where="sample-x")

    directions = lidar_like_directions(config).numpy()
    rays = {"pred": ([], []), "gt": ([], [])}
    for origin in origins[:2]:
        for direction in directions:
            for key, volume in (("pred", pred), ("gt", target)):
                index, enter, _ = brute_force_first_hit(volume != FREE, origin, direction, grid)
                rays[key][0].append(volume[tuple(index)] if math.isfinite(enter) else FREE)
                rays[key][1].append(enter)
    expected = brute_force_counts(*rays["pred"], *rays["gt"], 3, config.thresholds)
    np.testing.assert_allclose(metric.compute().iou, expected, equal_nan=True)
    assert metric.compute().num_rays > 100


def test_identical_volumes_score_one_and_bad_input_is_named():
    grid = VoxelGrid((-3.0, -3.0, -1.0, 3.0, 3.0, 2.0), (1.0, 1.0, 0.5))
    volume = np.full(grid.shape, FREE)
    volume[:, :, 0] = 1
    metric = RayIoU(NAMES, grid, RayIoUConfig(azimuth_step_deg=45.0, origin_margin=0.5))
    metric.update(volume, volume, np.array([[0.1, 0.1, 0.5]]))
    iou = metric.compute().iou
    np.testing.assert_allclose(iou[:, 1], 1.0)
    assert np.isnan(iou[:, [0, 2]]).all()
    with pytest.raises(ValueError, match="token-9: prediction: labels \\[5\\]"):
        metric.update(np.full(grid.shape, 5), volume, np.zeros((1, 3)), where="token-9")
    with pytest.raises(ValueError, match="token-9: ground truth shape"):
        metric.update(volume, volume[:-1], np.zeros((1, 3)), where="token-9")
    with pytest.raises(ValueError, match="thresholds"):
        RayIoU(NAMES, grid, RayIoUConfig(thresholds=()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU-only path")
def test_traversal_on_cuda_matches_cpu():
    rng = np.random.default_rng(6)
    occupied = torch.from_numpy(rng.random(GRID.shape) < 0.1)
    origins = torch.from_numpy(rng.uniform(GRID.lower, GRID.upper, (500, 3)))
    directions = torch.from_numpy(rng.normal(size=(500, 3)))
    cpu = first_occupied_voxel(occupied, origins, directions, GRID)
    gpu = first_occupied_voxel(occupied.cuda(), origins.cuda(), directions.cuda(), GRID)
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu())
