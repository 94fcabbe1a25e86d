"""The compiled splat segment sum (cuda/, renderlss.ops.compiled) against the torch reference
of renderlss.ops.splat, a hand-computed single point and float64 gradcheck.

The kernels are built once per test session into a temporary cache (or into
$RENDERLSS_EXT_CACHE when set, to reuse an earlier build); without a C++ compiler or ninja
every test here is skipped, saying so.
"""

import logging
import os
import subprocess
import sys

import pytest
import torch

from renderlss.geometry.grid import VoxelGrid
from renderlss.ops import compiled
from renderlss.ops.splat import _DepthContextSplat, plan_splat, splat_planned

GRID = VoxelGrid(point_cloud_range=(-2.0, -1.0, -1.0, 2.0, 1.0, 0.5), voxel_size=(0.5, 0.5, 0.25))
SHAPE = (2, 3, 5, 3, 4)  # B, N, D, h, w
CHANNELS = 6


@pytest.fixture(scope="session")
def ops(tmp_path_factory):
    missing = compiled._missing_tools()
    if missing:
        pytest.skip(f"compiled splat kernel not built: {missing}")
    reuse = "RENDERLSS_EXT_CACHE" in os.environ
    root = compiled.cache_dir() if reuse else tmp_path_factory.mktemp("splat_ext")
    return compiled.build(compiled.cuda_build_possible(), root)


def _case(seed: int, device: str = "cpu", dtype=torch.float32):
    """Depth, context and plan of random points around GRID (some outside, many voxels
    empty, several points per voxel)."""
    gen = torch.Generator().manual_seed(seed)
    lower = torch.tensor(GRID.point_cloud_range[:3])
    span = torch.tensor(GRID.point_cloud_range[3:]) - lower
    points = lower - 0.1 * span + 1.2 * span * torch.rand(*SHAPE, 3, generator=gen)
    depth = torch.rand(*SHAPE, generator=gen, dtype=dtype).softmax(2)
    b, n, _, h, w = SHAPE
    context = torch.randn(b, n, CHANNELS, h, w, generator=gen, dtype=dtype)
    plan = plan_splat(points.to(device), GRID)
    return depth.to(device), context.to(device), plan


def _flat_inputs(depth, context, plan):
    rows = context.permute(0, 1, 3, 4, 2).reshape(-1, context.shape[2])
    return (
        depth.reshape(-1).contiguous(),
        rows.contiguous(),
        plan.point_index,
        plan.voxel_index,
        plan.context_index,
    )


def _values_and_grads(depth, context, plan, kernel):
    depth = depth.clone().requires_grad_()
    context = context.clone().requires_grad_()
    volume = splat_planned(depth, context, plan, kernel=kernel)
    weights = torch.linspace(-1.0, 2.0, volume.numel(), device=volume.device).view_as(volume)
    (volume * weights).sum().backward()
    return volume.detach(), depth.grad, context.grad


def test_matches_torch_reference_values_and_gradients(ops):
    depth, context, plan = _case(0)
    num_voxels = SHAPE[0] * GRID.shape[0] * GRID.shape[1] * GRID.shape[2]
    # Several points share a voxel and many voxels stay empty: both paths are exercised.
    counts = torch.bincount(plan.voxel_index, minlength=num_voxels)
    assert counts.max() > 1 and (counts == 0).sum() > num_voxels // 4
    reference = _values_and_grads(depth, context, plan, "torch")
    kernel = _values_and_grads(depth, context, plan, "auto")
    # Each voxel is summed in plan order, as index_add_ does: the same float32 sums.
    torch.testing.assert_close(kernel[0], reference[0], rtol=0, atol=0)
    torch.testing.assert_close(kernel[1], reference[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(kernel[2], reference[2], rtol=1e-6, atol=1e-6)
    assert (kernel[0].permute(0, 2, 3, 4, 1).reshape(-1, CHANNELS)[counts == 0] == 0).all()


def test_gradcheck_float64(ops):
    depth, context, plan = _case(1, dtype=torch.float64)
    depth_flat, rows, *indices = _flat_inputs(depth, context, plan)
    depth_flat.requires_grad_()
    rows.requires_grad_()
    num_voxels = SHAPE[0] * GRID.shape[0] * GRID.shape[1] * GRID.shape[2]
    extension = compiled.splat_extension("auto", torch.device("cpu"))
    assert extension is not None

    def run(d, c):
        return _DepthContextSplat.apply(d, c, *indices, num_voxels, 1 << 17, extension)

    assert torch.autograd.gradcheck(run, (depth_flat, rows), eps=1e-6, atol=1e-8)


def test_single_point_by_hand(ops):
    depth = torch.tensor([0.0, 0.25, 0.0], dtype=torch.float32)
    context = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    point, voxel, cell = (torch.tensor([i]) for i in (1, 5, 1))
    volume = ops.splat_forward(depth, context, point, voxel, cell, 7)
    expected = torch.zeros(7, 2)
    expected[5] = torch.tensor([0.75, 1.0])
    assert torch.equal(volume, expected)
    grad_volume = torch.arange(14.0).view(7, 2)  # row 5 = (10, 11)
    grad_depth, grad_context = ops.splat_backward(
        grad_volume, depth, context, point, voxel, cell, True, True
    )
    assert torch.equal(grad_depth, torch.tensor([0.0, 10 * 3 + 11 * 4, 0.0]))
    assert torch.equal(grad_context, torch.tensor([[0.0, 0.0], [2.5, 2.75]]))
    only_depth = ops.splat_backward(grad_volume, depth, context, point, voxel, cell, True, False)
    assert only_depth[1].numel() == 0


def test_no_point_in_the_grid_gives_zeros(ops):
    depth, context, plan = _case(2)
    empty = torch.zeros(0, dtype=torch.long)
    volume = ops.splat_forward(
        *_flat_inputs(depth, context, plan)[:2],
        empty,
        empty,
        empty,
        int(plan.voxel_index.max()) + 1,
    )
    assert volume.shape[1] == CHANNELS and not volume.any()
    grad_depth, grad_context = ops.splat_backward(
        torch.ones_like(volume),
        *_flat_inputs(depth, context, plan)[:2],
        empty,
        empty,
        empty,
        True,
        True,
    )
    assert not grad_depth.any() and not grad_context.any()


def test_unsorted_and_out_of_range_plans_are_rejected(ops):
    depth, context, plan = _case(3)
    depth_flat, rows, point, voxel, cell = _flat_inputs(depth, context, plan)
    swapped = voxel.clone()
    first_change = int((voxel[1:] != voxel[:-1]).nonzero()[0])
    swapped[first_change], swapped[first_change + 1] = voxel[first_change + 1], voxel[first_change]
    with pytest.raises(RuntimeError, match="must be sorted"):
        ops.splat_forward(depth_flat, rows, point, swapped, cell, int(voxel.max()) + 1)
    with pytest.raises(RuntimeError, match="out of range"):
        ops.splat_forward(depth_flat, rows, point, voxel, cell, int(voxel.max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_kernel_matches_torch_reference(ops):
    assert compiled.splat_extension("auto", torch.device("cuda")) is not None, (
        "the build has no CUDA kernels"
    )
    depth, context, plan = _case(4, device="cuda")
    reference = _values_and_grads(depth, context, plan, "torch")
    kernel = _values_and_grads(depth, context, plan, "auto")
    for got, want in zip(kernel, reference):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    depth_flat, rows, point, voxel, cell = _flat_inputs(depth, context, plan)
    with pytest.raises(RuntimeError, match="must be sorted"):
        ops.splat_forward(depth_flat, rows, point, voxel.flip(0), cell, int(voxel.max()) + 1)


def test_selection_and_missing_compiler(monkeypatch, caplog):
    assert compiled.splat_extension("torch", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="auto"):
        compiled.splat_extension("fast", torch.device("cpu"))
    monkeypatch.setattr(compiled, "_library_loaded", lambda: False)
    monkeypatch.setattr(compiled.Path, "glob", lambda self, pattern: iter(()))
    monkeypatch.setenv("CXX", "no-such-compiler-renderlss")
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        assert compiled._find_or_build() is None
    assert len(caplog.records) == 1
    assert "no C++ compiler 'no-such-compiler-renderlss'" in caplog.records[0].getMessage()


def test_lock_of_a_dead_builder_is_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / "build.owner").write_text(dead.stdout.strip())
    (tmp_path / "lock").write_text("")  # torch's pid-less baton, left by the dead build
    with compiled._BuildLock(tmp_path):
        assert (tmp_path / "build.owner").read_text() == str(os.getpid())
        assert not (tmp_path / "lock").exists()
    assert not (tmp_path / "build.owner").exists()
