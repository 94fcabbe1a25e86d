"""Distributed functions and DDP training: two real gloo processes on localhost, and the
no-group path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers import free_port, loop_overrides, run_processes, set_torchrun_environment
from torch import nn

from renderlss.data.info_builder import create_infos
from renderlss.engine.experiment import load_experiment
from renderlss.engine.trainer import train
from renderlss.train.checkpoint import gather_rng_states, restore_training_state, save_checkpoint
from renderlss.train.distributed import (
    TORCHRUN_VARIABLES,
    all_gather_object,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    is_main_process,
    seed_everything,
    unwrap_model,
    wrap_model,
)
from renderlss.train.ema import ModelEMA
from renderlss.train.nan_guard import NanGuard

WORLD_SIZE = 2
REPO = Path(__file__).resolve().parents[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One process of the two-process run; it records what it saw for the parent to check."""
    set_torchrun_environment(rank, WORLD_SIZE, port)
    info = init_distributed(device="cpu")
    seen: dict = {"info": (info.rank, info.world_size, info.local_rank, str(info.device))}
    seen["is_distributed"] = info.is_distributed and dist.get_backend() == "gloo"
    values = torch.tensor([rank + 1.0, 10.0 * (rank + 1)])
    seen["sum"] = all_reduce_sum(values).tolist()
    seen["mean"] = all_reduce_mean(values).tolist()
    seen["input_after"] = values.tolist()
    seen["int_mean"] = all_reduce_mean(torch.tensor([rank])).tolist()
    seen["broadcast"] = broadcast_object({"from": rank, "items": [rank] * 3}, src=1)
    seen["gathered"] = all_gather_object(f"rank{rank}")
    seen["main"] = is_main_process()
    barrier()

    guard = NanGuard(max_consecutive=5, log=lambda message: None)
    terms = {"depth": torch.tensor(math.nan if rank == 1 else 0.5)}
    model = nn.Linear(2, 1)
    seen["guard"] = guard.check(0, terms, None, [f"tok{rank}"], torch.optim.SGD(model.parameters()))

    torch.manual_seed(0)  # identical replicas, as after seeding the model init
    ddp = wrap_model(nn.Linear(2, 1), info)
    seen["wrapped"] = isinstance(ddp, nn.parallel.DistributedDataParallel)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    ema = ModelEMA(ddp)
    seed_everything(3, rank)
    ddp(torch.randn(4, 2)).sum().backward()  # DDP averages the two ranks' gradients
    optimizer.step()
    ema.update(ddp, step=0)  # momentum 0: the teacher copies the student
    seen["student"] = unwrap_model(ddp).weight.detach().clone()
    seen["teacher"] = ema.module.weight.detach().clone()

    path = Path(out_dir) / "step_000001.pth"
    rng_states = gather_rng_states()
    if is_main_process():
        save_checkpoint(
            path,
            model=ddp,
            optimizer=optimizer,
            scheduler=None,
            scaler=None,
            step=1,
            epoch=0,
            config_dict={},
            seed=3,
            ema=ema,
            rng_states=rng_states,
        )
    barrier()
    seen["expected_draw"] = torch.rand(3)
    seed_everything(1000, rank)
    with torch.no_grad():
        unwrap_model(ddp).weight.zero_()
    state = restore_training_state(path, model=ddp, optimizer=optimizer, ema=ema)
    seen["restored_draw"] = torch.rand(3)
    seen["rng_restored"] = state.rng_restored
    seen["restored_student"] = unwrap_model(ddp).weight.detach().clone()
    torch.save(seen, Path(out_dir) / f"rank{rank}.pt")
    cleanup()


def test_two_gloo_processes(tmp_path):
    run_processes(_worker, (free_port(), str(tmp_path)), WORLD_SIZE, 180, "the two-process run")
    seen = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for rank, record in enumerate(seen):
        assert record["info"] == (rank, 2, rank, "cpu")
        assert record["is_distributed"]
        assert record["sum"] == [3.0, 30.0]  # (1 + 2), (10 + 20)
        assert record["mean"] == [1.5, 15.0]
        assert record["input_after"] == [rank + 1.0, 10.0 * (rank + 1)]
        assert record["int_mean"] == [0.5]
        assert record["broadcast"] == {"from": 1, "items": [1, 1, 1]}
        assert record["gathered"] == ["rank0", "rank1"]
        assert record["main"] == (rank == 0)
        assert record["guard"] is False  # rank 1's NaN makes both ranks skip
        assert record["wrapped"]
        assert torch.equal(record["teacher"], record["student"])
        assert record["rng_restored"]
        assert torch.equal(record["restored_draw"], record["expected_draw"])
        assert torch.equal(record["restored_student"], record["student"])
    assert torch.equal(seen[0]["student"], seen[1]["student"])  # replicas stay in sync
    assert not torch.equal(seen[0]["expected_draw"], seen[1]["expected_draw"])  # own streams


def _training_worker(rank: int, port: int, raw_overrides: list[str], out_dir: str) -> None:
    """One rank of a two-process training run; it saves its parameters and step records."""
    set_torchrun_environment(rank, WORLD_SIZE, port)
    torch.set_num_threads(1)
    config = load_experiment(REPO / "configs/synthetic_demo.py", raw_overrides)
    result = train(config, log=lambda line: None)
    # Parameters only: BatchNorm running statistics are each rank's own (no SyncBN).
    params = {name: p.detach() for name, p in result.model.named_parameters()}
    torch.save(dict(params=params, history=result.history), Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def train_infos(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return out / "renderlss_infos_train.pkl"


def test_two_processes_train_like_one_process_accumulating_their_samples(train_infos, tmp_path):
    # Equivalence per sample: each rank takes one sample, the single process the same two
    # samples as two micro-batches of one. Every forward then sees one sample, so BatchNorm's
    # batch statistics, SILog and the class balance (none of them linear in the batch) are
    # computed exactly as on a rank, and DDP's mean of the ranks' gradients equals the
    # accumulated half-sums; a 1 x 2 batch would differ in all three. Jitter draws from each
    # rank's own stream, so it is off. One update: the 3 training samples give each rank one
    # per epoch, so a second step would start the next epoch on the ranks only.
    steps = [
        "train.max_steps=1",
        "train.checkpoint_interval=100",
        "render.jitter=False",
        "data.batch_size=1",
    ]
    single = train(
        load_experiment(
            REPO / "configs/synthetic_demo.py",
            loop_overrides(train_infos, tmp_path / "one", *steps, "train.accumulate_steps=2"),
        ),
        log=lambda line: None,
    )
    raw = loop_overrides(train_infos, tmp_path / "two", *steps)
    run_processes(_training_worker, (free_port(), raw, str(tmp_path)), WORLD_SIZE, 180, "DDP")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), f"ranks differ in {name}"
    # AdamW's first update moves every parameter with a gradient by about lr (5e-4 in the
    # warm-up), so a rank that read the wrong sample moves most weights differently. Rounding
    # (the processes sum in other orders) can flip the sign of a gradient that is nearly 0,
    # and with it that weight's update (up to 2 lr): allow it in one weight in ten thousand.
    diffs = [
        (ranks[0]["params"][name] - value.detach()).abs()
        for name, value in single.model.named_parameters()
    ]
    off = sum(int((d > 1e-6).sum()) for d in diffs)
    assert off <= 1e-4 * sum(d.numel() for d in diffs), off
    keys = ("loss", "depth", "semantic", "grad_norm")
    for one, two in zip(single.history, ranks[0]["history"], strict=True):
        for key in keys:
            assert two[key] == pytest.approx(one[key], rel=1e-5), key
    # Logged loss terms are averaged over the ranks, gradients all-reduced: the same everywhere.
    for r0, r1 in zip(ranks[0]["history"], ranks[1]["history"], strict=True):
        assert {k: r0[k] for k in keys} == {k: r1[k] for k in keys}


@pytest.fixture
def no_torchrun_env(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("world_size", [None, "1"])
def test_single_process_needs_no_group(no_torchrun_env, world_size):
    if world_size is not None:
        no_torchrun_env.setenv("WORLD_SIZE", world_size)
    info = init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.local_rank, info.is_distributed) == (0, 1, 0, False)
    assert info.device == torch.device("cpu")
    assert not dist.is_initialized()
    values = torch.tensor([1.0, 2.0])
    reduced = all_reduce_mean(values)
    assert reduced.tolist() == [1.0, 2.0] and reduced is not values
    assert all_reduce_sum(torch.tensor([3])).tolist() == [3]
    assert broadcast_object({"a": 1}) == {"a": 1}
    assert all_gather_object(5) == [5]
    assert is_main_process()
    barrier()
    cleanup()
    model = nn.Linear(1, 1)
    assert wrap_model(model, info) is model and unwrap_model(model) is model


def test_incomplete_torchrun_environment_is_named(no_torchrun_env):
    no_torchrun_env.setenv("WORLD_SIZE", "2")
    no_torchrun_env.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="LOCAL_RANK is not set"):
        init_distributed()
    no_torchrun_env.setenv("LOCAL_RANK", "zero")
    with pytest.raises(RuntimeError, match="LOCAL_RANK='zero' is not an integer"):
        init_distributed()
    no_torchrun_env.setenv("LOCAL_RANK", "0")
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not set"):
        init_distributed()
    with pytest.raises(ValueError, match="backend"):
        init_distributed(backend="mpi")


def test_seed_everything_gives_each_rank_its_own_reproducible_stream():
    assert seed_everything(10, rank=1) == 11
    first = torch.rand(3)
    seed_everything(11)
    assert torch.equal(torch.rand(3), first)
    seed_everything(10, rank=0)
    assert not torch.equal(torch.rand(3), first)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        seed_everything(2**32)
