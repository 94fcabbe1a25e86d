"""The training loop as users run it: resume after a kill, TensorBoard (two DDP processes:
test_distributed.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import loop_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from renderlss.data.info_builder import create_infos
from renderlss.engine.experiment import load_experiment
from renderlss.engine.trainer import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def infos(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return out / "renderlss_infos_train.pkl"


def records(work_dir: Path) -> dict[int, dict]:
    """Last record of each step in a run's metrics.jsonl (a resumed run appends)."""
    lines = (work_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines)}


def test_killed_run_resumes_after_its_checkpoint_on_the_same_curve(infos, tmp_path):
    config_file = REPO / "configs/synthetic_demo.py"
    steps = ["train.max_steps=6", "train.checkpoint_interval=2"]
    whole = tmp_path / "whole"
    uninterrupted = train(
        load_experiment(config_file, loop_overrides(infos, whole, *steps)), log=lambda line: None
    )

    killed = tmp_path / "killed"
    args = [
        sys.executable,
        str(REPO / "tools/train.py"),
        str(config_file),
        "--cfg-options",
        *loop_overrides(infos, killed, *steps),
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

    config = load_experiment(config_file, loop_overrides(infos, killed, *steps))
    result = train(config, resume="auto", log=lambda line: None)
    # Steps 5 and 6 only: a run that restarted from step 0 would take six. The log is cut
    # back to the checkpoint on resume, so each step is in it once.
    assert result.step == 6 and len(result.history) == 2
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    reference, resumed = records(whole), records(killed)
    keys = ("loss", "depth", "semantic", "grad_norm")
    for step, record in zip((5, 6), result.history, strict=True):
        for key in keys:
            assert resumed[step][key] == pytest.approx(reference[step][key], rel=1e-5), (step, key)
            assert record[key] == pytest.approx(reference[step][key], rel=1e-5), (step, key)
    # The killed run was a subprocess with its own thread count: sums may be ordered
    # differently, hence a tolerance far below one step's change (lr 1e-3).
    expected = dict(uninterrupted.model.named_parameters())
    for name, value in result.model.named_parameters():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_tensorboard_has_the_scalars_and_pictures(infos, tmp_path):
    val_infos = infos.parent / "renderlss_infos_val.pkl"
    config = load_experiment(
        REPO / "configs/synthetic_demo.py",
        loop_overrides(
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
