"""How a run fails and what it leaves behind: non-finite weights are never saved, killed
writers' temporary files are cleaned up, written files get the umask's mode, a silent rank
is named, the metrics log stays strict JSON and free of repeated steps, the tools report
known errors in one line, and the CPU thread count is chosen from the usable cores."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import (
    REPO,
    dead_pid,
    free_port,
    host_of_temp_files,
    load_tool,
    loop_overrides,
    run_processes,
)
from silent_rank_worker import TIMEOUT_S, WORLD_SIZE, silent_rank
from torch import nn

from renderlss.engine.cli import configure_cpu_threads, one_line
from renderlss.engine.experiment import load_experiment
from renderlss.engine.trainer import train
from renderlss.io import atomic_open, atomic_write_text, remove_stale_temp_files
from renderlss.train.checkpoint import NonFiniteWeightsError, save_checkpoint
from renderlss.train.cpu_threads import choose_threads, physical_cores
from renderlss.train.ema import ModelEMA
from renderlss.train.metrics_log import cut_log_after, record_line

CONFIG = REPO / "configs/synthetic_demo.py"


def strict_json(line: str) -> dict:
    """``line`` parsed as JSON proper: NaN and Infinity are errors."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def infos(synthetic_root, tmp_path_factory) -> Path:
    """Info files made by tools/create_data.py, into a folder where a killed writer left a
    temporary file (which the tool must remove)."""
    out = tmp_path_factory.mktemp("infos")
    stale = out / f".renderlss_infos_train.pkl.{dead_pid()}@{host_of_temp_files()}.0badf00d.tmp"
    stale.write_bytes(b"half a pickle")
    create_data = load_tool("create_data")
    argv = ["--dataroot", str(synthetic_root), "--version", "v1.0-synthetic"]
    assert create_data.main([*argv, "--out-dir", str(out)]) == 0
    assert not stale.exists()
    return out / "renderlss_infos_train.pkl"


# --- 1. non-finite weights ---------------------------------------------------------------


def test_checkpoint_with_non_finite_weights_is_refused_naming_the_tensors(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    save = dict(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scheduler=None,
        scaler=None,
        step=1,
        epoch=0,
        config_dict={},
        seed=0,
    )
    save_checkpoint(tmp_path / "good.pth", model=model, ema=ModelEMA(model), **save)

    ema = ModelEMA(model)
    with torch.no_grad():
        ema.module[1].running_var[0] = math.nan
    with pytest.raises(NonFiniteWeightsError, match=r"ema\.module\.1\.running_var"):
        save_checkpoint(tmp_path / "ema.pth", model=model, ema=ema, **save)
    with torch.no_grad():
        model[0].bias[1] = math.inf
    with pytest.raises(NonFiniteWeightsError, match=r"1 weight tensor.*'model\.0\.bias'"):
        save_checkpoint(tmp_path / "model.pth", model=model, **save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pth"]


def test_diverged_run_stops_with_one_error_line_and_no_checkpoint(infos, tmp_path, capsys):
    """lr=1e37 makes the first step throw the weights to ~1e38; the second forward pass then
    overflows and leaves NaN in BatchNorm statistics while the guard skips its step."""
    work = tmp_path / "work"
    work.mkdir()
    stale = work / f".step_000002.pth.{dead_pid()}@{host_of_temp_files()}.0123abcd.tmp"
    stale.write_bytes(b"part of a checkpoint")
    overrides = loop_overrides(
        infos, work, "train.lr=1e37", "train.max_steps=2", "train.checkpoint_interval=2"
    )
    status = load_tool("train").main([str(CONFIG), "--cfg-options", *overrides])

    assert status == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert "NaN or infinity" in errors[0] and "no checkpoint was written" in errors[0]
    assert not stale.exists()
    assert not list(work.glob("step_*.pth"))
    records = [strict_json(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert records[1]["skipped"] == 1.0 and records[1]["loss"] is None


# --- 2. temporary files of killed writers -------------------------------------------------


def test_temp_file_of_a_writer_killed_with_sigkill_is_removed(tmp_path):
    target = tmp_path / "out" / "big.bin"
    script = (
        "import sys, time\n"
        "from renderlss.io import atomic_open\n"
        f"with atomic_open({str(target)!r}) as f:\n"
        "    f.write(b'x' * 100000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "writing"
    (left,) = list(target.parent.iterdir())
    assert left.name.startswith(f".big.bin.{writer.pid}@")
    assert remove_stale_temp_files(target.parent) == []  # its writer is alive

    writer.kill()
    writer.wait()
    assert left.exists() and not target.exists()
    assert remove_stale_temp_files(tmp_path) == [left]
    assert list(target.parent.iterdir()) == []


def test_only_stale_temp_files_of_this_host_are_removed(tmp_path):
    dead, host = dead_pid(), host_of_temp_files()
    nested = tmp_path / "CAM_FRONT"
    nested.mkdir()
    files = {
        "dead": tmp_path / f".a.npz.{dead}@{host}.00000000.tmp",
        "dead_nested": nested / f".b.npz.{dead}@{host}.00000001.tmp",
        "alive": tmp_path / f".c.npz.{os.getpid()}@{host}.00000002.tmp",
        "other_host": tmp_path / f".d.npz.{dead}@{host}x.00000003.tmp",
        "not_ours": tmp_path / ".e.npz.abc.tmp",
        "artifact": tmp_path / "f.npz",
    }
    for path in files.values():
        path.write_bytes(b"")

    assert remove_stale_temp_files(tmp_path, recursive=False) == [files["dead"]]
    assert remove_stale_temp_files(tmp_path) == [files["dead_nested"]]
    kept = {name for name, path in files.items() if path.exists()}
    assert kept == {"alive", "other_host", "not_ours", "artifact"}
    assert remove_stale_temp_files(tmp_path / "missing") == []


# --- 3. file modes ------------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_open(tmp_path / "b.bin") as handle:
            handle.write(b"1")
    finally:
        os.umask(previous)
    assert oct((tmp_path / "a.json").stat().st_mode & 0o777) == oct(mode)
    assert oct((tmp_path / "b.bin").stat().st_mode & 0o777) == oct(mode)


# --- 4. a silent rank ---------------------------------------------------------------------


def test_silent_rank_is_named_after_the_configured_timeout(tmp_path):
    run_processes(silent_rank, (free_port(), str(tmp_path)), WORLD_SIZE, 60, "the silent-rank run")
    message, waited = json.loads((tmp_path / "rank0.json").read_text())
    assert "rank(s) [1] did not answer" in message
    assert "rank 0: a collective at step 7" in message
    assert TIMEOUT_S <= waited < 3 * TIMEOUT_S


# --- 5. metrics log -----------------------------------------------------------------------


def test_metrics_lines_are_strict_json_with_null_for_non_finite_values():
    line = record_line({"step": 3, "loss": math.nan, "lr": math.inf, "depth": -math.inf, "a": 1})
    assert strict_json(line) == {"step": 3, "loss": None, "lr": None, "depth": None, "a": 1}
    assert line.endswith("\n") and line.count("\n") == 1


def test_metrics_log_is_cut_back_to_the_resumed_step(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text(
        "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 7))
        + '{"step": 7, "lo'  # the killed run's half-written line
    )
    assert cut_log_after(log, 4) == 3
    assert [strict_json(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]
    assert cut_log_after(tmp_path / "none.jsonl", 4) == 0


def test_resumed_run_logs_each_step_once(infos, tmp_path):
    work = tmp_path / "work"
    steps = ["train.checkpoint_interval=2", "train.keep_last=1"]
    log = lambda line: None  # noqa: E731
    train(
        load_experiment(CONFIG, loop_overrides(infos, work, "train.max_steps=2", *steps)), log=log
    )
    with open(work / "metrics.jsonl", "a") as handle:  # what a run killed at step 3 logged
        handle.write(json.dumps({"step": 3, "loss": 0.5}) + "\n")
    resumed = loop_overrides(infos, work, "train.max_steps=4", *steps)
    train(load_experiment(CONFIG, resumed), resume="auto", log=log)
    lines = (work / "metrics.jsonl").read_text().splitlines()
    assert [strict_json(line)["step"] for line in lines] == [1, 2, 3, 4]
    assert strict_json(lines[2])["loss"] != 0.5


# --- 6. one-line errors of the tools ------------------------------------------------------


def test_train_tool_reports_known_failures_in_one_line(infos, tmp_path, capsys):
    tool = load_tool("train")
    broken = tmp_path / "step_000002.pth"
    broken.write_bytes(b"not a checkpoint")
    cases = {  # arguments, overrides, what the line must name
        "unreadable checkpoint": ([f"--resume={broken}"], [], str(broken)),
        "missing class counts": ([], ["model.loss.class_counts='none.json'"], "none.json"),
        "config": ([], ["train.lr=-1"], "lr > 0"),
    }
    for what, (arguments, extra, named) in cases.items():
        overrides = loop_overrides(infos, tmp_path / "work", *extra)
        status = tool.main([str(CONFIG), *arguments, "--cfg-options", *overrides])
        errors = capsys.readouterr().err.strip().splitlines()
        assert status == 2, what
        assert len(errors) == 1 and errors[0].startswith("error: ") and named in errors[0], what


class _BadSample(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> None:
        raise ValueError("x.npz: sample tok1: field 'depth' missing\n(made by make_dense_depth)")


def test_error_of_a_loader_worker_is_reported_without_the_worker_traceback():
    loader = torch.utils.data.DataLoader(_BadSample(), num_workers=1)
    with pytest.raises(ValueError) as caught:
        next(iter(loader))
    assert "File " in str(caught.value)  # the worker's traceback is in the message
    assert one_line(caught.value) == (
        "Caught ValueError in DataLoader worker process 0. | "
        "ValueError: x.npz: sample tok1: field 'depth' missing | (made by make_dense_depth)"
    )


def test_train_tool_shows_unexpected_errors_in_full(infos, tmp_path, monkeypatch):
    tool = load_tool("train")

    def fails(config, resume=None):
        raise KeyError("a bug")

    monkeypatch.setattr(tool, "train", fails)
    with pytest.raises(KeyError, match="a bug"):
        tool.main([str(CONFIG), "--cfg-options", *loop_overrides(infos, tmp_path)])


# --- 7. CPU threads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "requested, omp, cores, local_world, expected",
    [
        (3, "8", 16, 2, 3),  # an explicit count wins
        (0, "2", 16, 2, 2),  # then the user's OMP_NUM_THREADS
        (0, None, 16, 2, 8),  # 16 cores / 2 ranks
        (0, "0", 8, 1, 8),  # OMP_NUM_THREADS=0 is no choice
        (0, "x", 8, 1, 8),
        (0, None, 15, 4, 3),  # whole cores only
        (0, None, 1, 4, 1),  # never fewer than one
    ],
)
def test_thread_choice(requested, omp, cores, local_world, expected):
    assert choose_threads(requested, omp, cores, local_world) == expected


def test_physical_cores_count_hyperthreads_once(tmp_path):
    # cpu0/cpu2 and cpu1/cpu3 are the two hyper-threads of cores 0 and 1
    for cpu, core in [(0, 0), (1, 1), (2, 0), (3, 1)]:
        folder = tmp_path / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text("0\n")
        (folder / "core_id").write_text(f"{core}\n")
    assert physical_cores([0, 1, 2, 3], tmp_path) == 2
    assert physical_cores([0, 2], tmp_path) == 1
    assert physical_cores([0, 5], tmp_path) == 2  # unreadable: count the CPUs


def test_tools_set_the_chosen_threads(monkeypatch):
    config = load_experiment(CONFIG, ["data.workers=0", "train.threads=0"])
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    try:
        assert configure_cpu_threads(config) == 1 and torch.get_num_threads() == 1
        config.train.threads = 2
        assert configure_cpu_threads(config) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
