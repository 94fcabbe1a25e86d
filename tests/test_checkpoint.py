"""Checkpoints: round trip, resumed runs continue the same stream, clear errors, pruning,
atomic writes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from renderlss.train.checkpoint import (
    CheckpointError,
    apply_rng_state,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_training_state,
    save_checkpoint,
)
from renderlss.train.distributed import seed_everything
from renderlss.train.ema import ModelEMA

CONFIG = {"train": {"lr": 0.01, "max_steps": 4}, "data": {"classes": ["car", "free"]}}


def make_run(seed: int = 0):
    """A tiny model with every piece of training state a real run has."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1)
    ema = ModelEMA(model)
    return model, optimizer, scheduler, scaler, ema


def train_steps(run, first: int, count: int) -> None:
    """Steps whose data and dropout-like noise come from all three random generators."""
    model, optimizer, scheduler, scaler, ema = run
    for step in range(first, first + count):
        x = torch.randn(5, 3) + float(np.random.rand()) + random.random()
        loss = model(x).square().mean()
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        ema.update(model, step)


def save(run, path, step, **kwargs):
    model, optimizer, scheduler, scaler, ema = run
    return save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        step=step,
        epoch=1,
        config_dict=CONFIG,
        seed=0,
        ema=ema,
        **kwargs,
    )


def restore(run, path, **kwargs):
    model, optimizer, scheduler, scaler, ema = run
    return restore_training_state(
        path,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        ema=ema,
        **kwargs,
    )


def assert_same_state(a, b) -> None:
    """Nested dicts/lists of tensors and plain values are identical."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    else:
        assert a == b


def draws() -> tuple:
    return random.random(), np.random.rand(4).tolist(), torch.rand(4).tolist()


def test_round_trip_restores_identical_state_and_random_streams(tmp_path):
    run = make_run()
    train_steps(run, 0, 3)
    path = save(run, checkpoint_path(tmp_path, 3), 3, extra={"note": "x", "t": torch.ones(2)})
    expected_draws = draws()
    fresh = make_run(seed=1)
    seed_everything(123)
    state = restore(fresh, path)
    assert draws() == expected_draws
    assert state.rng_restored
    assert (state.step, state.epoch, state.seed) == (3, 1, 0)
    assert state.extra["note"] == "x" and torch.equal(state.extra["t"], torch.ones(2))
    for original, restored in zip(run, fresh):
        assert_same_state(original.state_dict(), restored.state_dict())
    assert fresh[3].get_scale() == run[3].get_scale()
    assert fresh[1].param_groups[0]["lr"] == run[1].param_groups[0]["lr"]


def test_resumed_run_continues_the_same_run(tmp_path):
    seed_everything(5)
    straight = make_run()
    train_steps(straight, 0, 4)

    seed_everything(5)
    first = make_run()
    train_steps(first, 0, 2)
    path = save(first, checkpoint_path(tmp_path, 2), 2)
    seed_everything(99)  # a new process starts with other streams
    resumed = make_run(seed=7)
    state = restore(resumed, path)
    train_steps(resumed, state.step, 2)
    for a, b in zip(straight, resumed):
        assert_same_state(a.state_dict(), b.state_dict())


def test_meta_describes_the_run(tmp_path):
    run = make_run()
    path = save(run, tmp_path / "a.pth", 7)
    checkpoint = load_checkpoint(path)
    meta = checkpoint["meta"]
    assert meta["config"] == CONFIG
    assert (meta["step"], meta["epoch"], meta["seed"]) == (7, 1, 0)
    assert meta["torch_version"] == torch.__version__
    revision = meta["git_revision"]
    assert revision == "unknown" or (len(revision) == 40 and int(revision, 16) >= 0)
    assert meta["time"].endswith("+00:00")
    assert checkpoint["model"].keys() == run[0].state_dict().keys()


def test_wrapped_model_is_saved_bare(tmp_path):
    run = make_run()
    model, optimizer, scheduler, scaler, ema = run
    wrapped_run = (nn.DataParallel(model), optimizer, scheduler, scaler, ema)
    path = save(wrapped_run, tmp_path / "w.pth", 0)
    keys = list(load_checkpoint(path)["model"])
    assert keys == list(model.state_dict()) and not any(k.startswith("module.") for k in keys)
    restore((nn.DataParallel(make_run(seed=3)[0]), None, None, None, None), path)


def test_bad_files_give_errors_naming_the_file(tmp_path):
    run = make_run()
    good = save(run, tmp_path / "good.pth", 1)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (truncated, garbage, tmp_path / "missing.pth"):
        with pytest.raises(CheckpointError, match=path.name):
            load_checkpoint(path)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pth.*format"):
        load_checkpoint(foreign)


def test_restore_into_a_different_model_names_file_and_field(tmp_path):
    path = save(make_run(), tmp_path / "m.pth", 1)
    other = nn.Sequential(nn.Linear(3, 5))
    with pytest.raises(CheckpointError, match="m.pth.*'model'"):
        restore_training_state(path, model=other)


def test_other_world_size_reseeds_every_rank_from_seed_and_step(tmp_path):
    run = make_run()
    streams = [capture_rng_state(), capture_rng_state()]  # as saved by a 2-process run
    path = save(run, tmp_path / "two.pth", 6, rng_states=streams)
    messages = []
    state = restore(make_run(), path, log=messages.append)
    after_restore = draws()
    seed_everything(0 + 6, 0)
    assert not state.rng_restored
    assert after_restore == draws()
    assert len(messages) == 1 and "two.pth" in messages[0]


def test_pruning_keeps_the_newest_by_step_number(tmp_path):
    steps = [1, 5, 999999, 10, 1000000]
    for step in steps:
        checkpoint_path(tmp_path, step).write_bytes(b"x")
    (tmp_path / "config.py").write_text("x = 1\n")
    (tmp_path / ".step_002000.pth.abc.tmp").write_bytes(b"partial")
    assert [s for s, _ in list_checkpoints(tmp_path)] == sorted(steps)
    assert latest_checkpoint(tmp_path) == tmp_path / "step_1000000.pth"
    removed = prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == [
        "step_000001.pth",
        "step_000005.pth",
        "step_000010.pth",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".step_002000.pth.abc.tmp",
        "config.py",
        "step_1000000.pth",
        "step_999999.pth",
    ]
    assert prune_checkpoints(tmp_path, keep_last=5) == []
    assert latest_checkpoint(tmp_path / "nothing") is None
    with pytest.raises(ValueError, match="keep_last"):
        prune_checkpoints(tmp_path, keep_last=0)


def test_state_that_would_not_load_is_refused_at_save_time(tmp_path):
    with pytest.raises(ValueError, match="x.pth.*'extra'"):
        save(make_run(), tmp_path / "x.pth", 1, extra={"loss": np.float64(1.0)})
    assert list(tmp_path.iterdir()) == []


class UnpicklableScheduler:
    """A scheduler whose state cannot be pickled: torch.save fails in the middle of the write."""

    def state_dict(self) -> dict:
        return {"lr_lambda": lambda step: 1.0}


def test_failed_save_leaves_no_partial_file(tmp_path):
    model, optimizer, _, scaler, ema = make_run()
    broken = (model, optimizer, UnpicklableScheduler(), scaler, ema)
    path = checkpoint_path(tmp_path, 4)
    with pytest.raises(Exception, match="pickle"):
        save(broken, path, 4)
    assert list(tmp_path.iterdir()) == []
    save(make_run(), path, 3)
    with pytest.raises(Exception, match="pickle"):
        save(broken, path, 4)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert load_checkpoint(path)["meta"]["step"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA generator state needs a GPU")
def test_cuda_random_stream_round_trip():
    torch.cuda.manual_seed(4)
    state = capture_rng_state()
    expected = torch.rand(3, device="cuda")
    torch.cuda.manual_seed(5)
    apply_rng_state(state)
    assert torch.equal(torch.rand(3, device="cuda"), expected)
