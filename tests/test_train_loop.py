"""The training loop as users run it: resume after a kill, two DDP processes, TensorBoard."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import RENDERED_LOSS_ONLY_OVERRIDES, free_port, set_torchrun_environment
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from renderlss.data.info_builder import create_infos
from renderlss.engine.experiment import load_experiment
from renderlss.engine.trainer import train

REPO = Path(__file__).resolve().parents[1]
# A very small network on coarse inputs: these tests are about the loop, not the model.
LOOP_OVERRIDES = [
    *RENDERED_LOSS_ONLY_OVERRIDES,
    "data.input_size=(32,64)",
    "data.grid.point_cloud_range=(-12.8,-12.8,-1.0,12.8,12.8,5.4)",
    "data.grid.voxel_size=(1.6,1.6,1.6)",
    "data.targets.num_rays=128",
    "data.batch_size=1",
    "model.backbone.frozen_bn=True",
    "model.neck.out_channels=16",
    "model.neck.out_stride=16",
    "model.depth.mid_channels=16",
    "model.depth.context_channels=8",
    "model.depth.bins.num_bins=8",
    "model.encoder3d.channels=8",
    "model.encoder3d.num_blocks=1",
    "model.head.hidden_channels=8",
    "train.warmup_steps=2",
    "train.lr=1e-3",
    "train.log_interval=1",
]


@pytest.fixture(scope="module")
def infos(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return out / "renderlss_infos_train.pkl"


def overrides(infos: Path, work_dir: Path, *extra: str) -> list[str]:
    return [
        *LOOP_OVERRIDES,
        f"data.train_infos={str(infos)!r}",
        f"train.work_dir={str(work_dir)!r}",
        *extra,
    ]


def records(work_dir: Path) -> dict[int, dict]:
    """Last record of each step in a run's metrics.jsonl (a resumed run appends)."""
    lines = (work_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines)}


def test_killed_run_resumes_on_the_same_loss_curve(infos, tmp_path):
    steps = ["train.max_steps=6", "train.checkpoint_interval=2"]
    whole = tmp_path / "whole"
    train(
        load_experiment(REPO / "configs/synthetic_demo.py", overrides(infos, whole, *steps)),
        log=lambda line: None,
    )

    killed = tmp_path / "killed"
    args = [
        sys.executable,
        str(REPO / "tools/train.py"),
        str(REPO / "configs/synthetic_demo.py"),
        "--cfg-options",
        *overrides(infos, killed, *steps),
    ]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (killed / "step_000004.pth").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint at step 4"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (killed / "step_000006.pth").exists():  # finished before the kill landed: cut it back
        (killed / "step_000006.pth").unlink()

    config = load_experiment(REPO / "configs/synthetic_demo.py", overrides(infos, killed, *steps))
    result = train(config, resume="auto", log=lambda line: None)
    assert result.step == 6
    reference, resumed = records(whole), records(killed)
    for step in (5, 6):
        for key in ("loss", "depth", "semantic", "grad_norm"):
            assert resumed[step][key] == pytest.approx(reference[step][key], rel=1e-5), (step, key)


def _ddp_worker(rank: int, port: int, raw_overrides: list[str], out: str) -> None:
    set_torchrun_environment(rank, 2, port)
    torch.set_num_threads(1)
    config = load_experiment(REPO / "configs/synthetic_demo.py", raw_overrides)
    result = train(config, log=lambda line: None)
    # Parameters only: BatchNorm running statistics are each rank's own (no SyncBN); DDP
    # broadcasts rank 0's at every forward, and rank 0 is the one that saves checkpoints.
    params = {name: p.detach() for name, p in result.model.named_parameters()}
    torch.save(dict(params=params, history=result.history), f"{out}/rank{rank}.pt")


def test_two_processes_match_one_process_with_the_same_global_batch(infos, tmp_path):
    steps = ["train.max_steps=2", "train.checkpoint_interval=100", "train.grad_clip=0.0"]
    single = train(
        load_experiment(
            REPO / "configs/synthetic_demo.py",
            overrides(infos, tmp_path / "one", *steps, "data.batch_size=2"),
        ),
        log=lambda line: None,
    )
    raw = overrides(infos, tmp_path / "two", *steps, "data.batch_size=1")
    mp.spawn(_ddp_worker, args=(free_port(), raw, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), f"ranks differ in {name}"
    # Both runs see the same two samples in step 1 (one process both, two processes one each);
    # SILog and class balance are not linear in the batch, so allow a small difference.
    assert rank0["history"][0]["loss"] == pytest.approx(single.history[0]["loss"], rel=0.05)
    # Logged loss terms are averaged over the ranks, gradients all-reduced: the same everywhere.
    for r0, r1 in zip(rank0["history"], rank1["history"]):
        assert {k: r0[k] for k in ("loss", "depth", "semantic", "grad_norm")} == {
            k: r1[k] for k in ("loss", "depth", "semantic", "grad_norm")
        }


def test_tensorboard_has_the_scalars_and_pictures(infos, tmp_path):
    val_infos = infos.parent / "renderlss_infos_val.pkl"
    config = load_experiment(
        REPO / "configs/synthetic_demo.py",
        overrides(
            infos,
            tmp_path,
            "train.max_steps=2",
            "train.checkpoint_interval=100",
            "train.eval_interval=2",
            "train.image_interval=2",
            f"data.val_infos={str(val_infos)!r}",
            "eval.image_stride=8",
        ),
    )
    train(config, log=lambda line: None)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "train/loss/depth",
        "train/loss/semantic",
        "train/loss/total",
        "train/lr",
        "train/grad_norm",
        "train/samples_per_s",
        "train/data_time",
        "train/memory_mb",
    ):
        assert tag in tags, (tag, sorted(tags))
    assert [e.step for e in events.Scalars("train/lr")] == [1, 2]
    assert "val/depth/lidar/abs_rel" in tags and "val/depth/oracle/abs_rel" in tags
    assert {"val/depth", "val/semantics"} <= set(events.Tags()["images"])
