"""Occ3D voxel mIoU: hand cases, brute-force counting loops, merging and all-reduce."""

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import run_processes

from renderlss.data.classes import load_classes
from renderlss.eval import (
    DepthMetrics,
    OccupancyIoU,
    RayIoU,
    confusion_matrix,
    format_class_table,
    occ3d_eval_mask,
)
from renderlss.geometry.grid import VoxelGrid

CONFIG = "configs/_base_/occ3d_nuscenes.py"
NAMES = ["a", "b", "c"]  # label 3 = free


def brute_force_iou(preds, targets, masks, num_labels, ignore_index=255):
    """Per-label IoU by counting TP, FP and FN voxel by voxel."""
    tp, fp, fn = np.zeros(num_labels), np.zeros(num_labels), np.zeros(num_labels)
    for pred, target, mask in zip(preds, targets, masks):
        for p, t, m in zip(pred.ravel(), target.ravel(), mask.ravel()):
            if not m or t == ignore_index:
                continue
            if p == t:
                tp[t] += 1
            else:
                fp[p] += 1
                fn[t] += 1
    with np.errstate(invalid="ignore"):
        return tp / (tp + fp + fn)


def test_confusion_matrix_counts_pairs_like_a_loop():
    rng = np.random.default_rng(0)
    pred, target = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    valid = rng.random(200) < 0.7
    expected = np.zeros((5, 5), dtype=np.int64)
    for p, t, v in zip(pred, target, valid):
        expected[t, p] += v
    got = confusion_matrix(
        torch.from_numpy(pred), torch.from_numpy(target), 5, torch.from_numpy(valid)
    )
    np.testing.assert_array_equal(got.numpy(), expected)


def test_hand_case_free_false_negative_absent_class_and_mask():
    # Voxels (target, pred): (a, a) (a, free) (b, a) (free, b) (free, free), and a masked-out
    # (b, b) that must not count. Class c never appears -> NaN, left out of the means.
    target = np.array([0, 0, 1, 3, 3, 1])
    pred = np.array([0, 3, 0, 1, 3, 1])
    mask = np.array([1, 1, 1, 1, 1, 0])
    metric = OccupancyIoU(NAMES)
    metric.update(pred, target, mask)
    result = metric.compute(excluded_class_names=["b"])
    # a: TP (a, a), FN (a, free), FP (b, a) -> 1 / 3.  b: FN (b, a), FP (free, b) -> 0.
    # free: TP (free, free), FN (free, b), FP (a, free) -> 1 / 3.
    np.testing.assert_allclose(result.iou[[0, 1, 3]], [1 / 3, 0.0, 1 / 3])
    assert math.isnan(result.iou[2])
    assert result.miou == pytest.approx((1 / 3 + 0.0) / 2)
    assert result.miou_subset == pytest.approx(1 / 3)
    # Occupied vs free: occupied TP = (a,a) and (b,a) = 2; union = 5 voxels minus (free,free).
    assert result.geometry_iou == pytest.approx(2 / 4)
    assert result.as_dict()["mIoU_3_classes"] == pytest.approx(1 / 6)
    assert result.as_dict()["mIoU_2_classes"] == pytest.approx(1 / 3)


def test_random_volumes_match_brute_force_and_both_means():
    classes = load_classes(CONFIG)
    names = classes.occ_class_names
    k = len(names)
    rng = np.random.default_rng(1)
    preds, targets, masks = [], [], []
    metric = OccupancyIoU(names, ignore_index=classes.ignore_index)
    for _ in range(3):
        target = rng.integers(0, k + 1, (6, 5, 4))
        target[target == 5] = 17  # construction_vehicle absent from the ground truth
        target[0, 0, 0] = classes.ignore_index
        pred = np.where(
            rng.random(target.shape) < 0.6, target % (k + 1), rng.integers(0, k + 1, target.shape)
        )
        pred[pred == 5] = 4
        labels = {"semantics": target, "mask_camera": rng.random(target.shape) < 0.8}
        labels["mask_lidar"] = ~labels["mask_camera"]
        mask = occ3d_eval_mask(labels, "camera", "sample")
        metric.update(pred, target, mask, where="sample")
        preds.append(pred)
        targets.append(target)
        masks.append(mask)
    expected = brute_force_iou(preds, targets, masks, k + 1)
    result = metric.compute(excluded_class_names=["others", "other_flat"])
    np.testing.assert_allclose(result.iou, expected, equal_nan=True)
    assert math.isnan(result.iou[names.index("construction_vehicle")])
    assert result.miou == pytest.approx(np.nanmean(expected[:k]))
    keep = [i for i, n in enumerate(names) if n not in ("others", "other_flat")]
    assert result.miou_subset == pytest.approx(np.nanmean(expected[keep]))
    assert result.subset_size == 15


def test_mask_choice_and_missing_field():
    labels = {"mask_camera": np.ones(3), "mask_lidar": np.zeros(3)}
    assert occ3d_eval_mask(labels, "lidar", "x").sum() == 0
    assert occ3d_eval_mask(labels, "none", "x") is None
    with pytest.raises(ValueError, match="gts/s/t/labels.npz.*mask_camera"):
        occ3d_eval_mask({"semantics": np.zeros(3)}, "camera", "gts/s/t/labels.npz")


def test_bad_labels_and_names_raise_clear_errors():
    metric = OccupancyIoU(NAMES)
    with pytest.raises(ValueError, match="token-1: prediction: labels \\[7\\]"):
        metric.update(np.array([7]), np.array([0]), where="token-1")
    with pytest.raises(ValueError, match="ground truth: labels \\[9\\]"):
        metric.update(np.array([0]), np.array([9]), where="token-1")
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="not in the class list"):
        metric.compute(excluded_class_names=["nope"])
    metric.update(np.array([0]), np.array([255]))  # the ignore label is skipped, not an error
    assert int(metric.confusion.sum()) == 0


def test_merging_two_accumulators_equals_one():
    rng = np.random.default_rng(2)
    samples = [(rng.integers(0, 4, 50), rng.integers(0, 4, 50)) for _ in range(4)]
    whole, first, second = OccupancyIoU(NAMES), OccupancyIoU(NAMES), OccupancyIoU(NAMES)
    for i, (pred, target) in enumerate(samples):
        whole.update(pred, target)
        (first if i % 2 else second).update(pred, target)
    first.merge(second)
    torch.testing.assert_close(first.state(), whole.state())
    third = OccupancyIoU(NAMES)
    third.merge_state(whole.state())
    third.all_reduce()  # no process group: a no-op
    torch.testing.assert_close(third.state(), whole.state())
    with pytest.raises(ValueError, match="cannot merge"):
        third.merge_state(torch.zeros(2, 2, dtype=torch.int64))


def test_table_is_aligned_and_labels_both_means():
    metric = OccupancyIoU(NAMES)
    metric.update(np.array([0, 1, 3]), np.array([0, 1, 3]))
    table = metric.compute(excluded_class_names=["a"]).table()
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU"]
    assert "100.00" in lines[2] and lines[2].startswith("a ")
    assert any(line.split()[-1] == "nan" and line.startswith("c ") for line in lines)
    assert "mIoU (3 classes)" in table and "mIoU (2 classes, without a)" in table
    value_columns = {len(line) for line in lines if line[-1].isdigit() or line.endswith("nan")}
    assert len(value_columns) == 1  # right-aligned numbers end in the same column
    with pytest.raises(ValueError, match="values for 2 columns"):
        format_class_table(["x"], {"p": [0.1], "q": [0.2]}, {"mean": [0.1]})


def _distributed_worker(rank, store, out_dir, parts):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    grid = VoxelGrid((0.0, 0.0, 0.0, 4.0, 4.0, 2.0), (1.0, 1.0, 1.0))
    accumulators = [OccupancyIoU(NAMES), RayIoU(NAMES, grid), DepthMetrics()]
    fill(accumulators, parts[rank])
    for acc in accumulators:
        acc.all_reduce()
    torch.save([acc.state() for acc in accumulators], f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def fill(accumulators, part):
    occupancy, rays, depth = accumulators
    occupancy.update(part["pred"], part["target"])
    rays.update_hits(*part["rays"])
    depth.update(part["depth_pred"], part["depth_target"])


def test_all_reduce_over_two_gloo_processes_equals_one_process(tmp_path):
    rng = np.random.default_rng(3)
    parts = []
    for _ in range(2):
        labels = [torch.from_numpy(rng.integers(0, 4, 40)) for _ in range(2)]
        distances = [torch.from_numpy(rng.random(40) * 5) for _ in range(2)]
        parts.append(
            dict(
                pred=rng.integers(0, 4, 30),
                target=rng.integers(0, 4, 30),
                rays=(labels[0], distances[0], labels[1], distances[1]),
                depth_pred=rng.random((2, 9)) + 0.5,
                depth_target=rng.random((2, 9)) * 2,
            )
        )
    run_processes(
        _distributed_worker,
        (str(tmp_path / "store"), str(tmp_path), parts),
        2,
        120,
        "the two-process all-reduce",
        start_method="fork",
    )
    grid = VoxelGrid((0.0, 0.0, 0.0, 4.0, 4.0, 2.0), (1.0, 1.0, 1.0))
    single = [OccupancyIoU(NAMES), RayIoU(NAMES, grid), DepthMetrics()]
    for part in parts:
        fill(single, part)
    for rank in range(2):
        states = torch.load(tmp_path / f"rank{rank}.pt")
        for state, acc in zip(states, single):
            torch.testing.assert_close(state, acc.state())
