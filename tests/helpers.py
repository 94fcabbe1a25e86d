"""Pieces several test files share: config overrides for test-sized runs and loops, an untrained
checkpoint, a localhost process group with a time-limited launcher for gloo tests, and tools/
scripts as modules."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.multiprocessing as mp

from renderlss.configuration import to_dict
from renderlss.engine.build import build_model
from renderlss.engine.experiment import ExperimentConfig
from renderlss.io import temp_path_for
from renderlss.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]

# A test-sized network on small images, loaded in the main process; the grid is each test's.
TINY_NETWORK_OVERRIDES = [
    "data.input_size=(32,64)",
    "data.workers=0",
    "model.neck.out_channels=8",
    "model.depth.mid_channels=8",
    "model.depth.bins.num_bins=11",
    # The regular lift (the demo config draws PDF samples): deterministic across processes
    # and batch splits; tests/test_lift_options.py covers the PDF lift.
    "model.depth.sampling='bins'",
    "model.depth.context_channels=4",
    "model.encoder3d.channels=4",
    "model.encoder3d.num_blocks=1",
    "model.head.hidden_channels=4",
]

# Training from the rendered depth and semantics of the keyframe alone: no Occ3D labels, no
# validation, no pictures; loaded in the main process.
RENDERED_LOSS_ONLY_OVERRIDES = [
    "data.load_occ=False",
    "data.targets.adjacent_keyframes=0",
    "data.workers=0",
    "data.val_infos=''",
    "train.image_interval=0",
    "model.loss.class_counts=''",
    "model.loss.occ3d_weight=0.0",
    "model.loss.occ3d_class_counts=''",
    "model.loss.depth_weight=1.0",
    "model.loss.semantic_weight=1.0",
]

# A very small network on coarse inputs, rendered losses only: for tests of the training
# loop (resume, DDP), not of the model.
LOOP_OVERRIDES = [
    *RENDERED_LOSS_ONLY_OVERRIDES,
    "data.input_size=(32,64)",
    "data.grid.point_cloud_range=(-12.8,-12.8,-1.0,12.8,12.8,5.4)",
    "data.grid.voxel_size=(1.6,1.6,1.6)",
    # The synthetic fixture writes Occ3D-nuScenes labels (200x200x16 at 0.4 m), which
    # nest this grid: validation pools them onto it.
    "data.label_grid={'point_cloud_range':(-40.0,-40.0,-1.0,40.0,40.0,5.4),"
    "'voxel_size':(0.4,0.4,0.4)}",
    "data.targets.num_rays=128",
    "data.batch_size=1",
    "model.backbone.frozen_bn=True",
    "model.neck.out_channels=16",
    "model.neck.out_stride=16",
    "model.depth.mid_channels=16",
    "model.depth.context_channels=8",
    "model.depth.bins.num_bins=8",
    "model.depth.sampling='bins'",  # as in TINY_NETWORK_OVERRIDES
    "model.encoder3d.channels=8",
    "model.encoder3d.num_blocks=1",
    "model.head.hidden_channels=8",
    "train.warmup_steps=2",
    "train.lr=1e-3",
    "train.log_interval=1",
]


def loop_overrides(infos: Path, work_dir: Path, *extra: str) -> list[str]:
    """:data:`LOOP_OVERRIDES` training on ``infos`` into ``work_dir``, then ``extra``."""
    return [
        *LOOP_OVERRIDES,
        f"data.train_infos={str(infos)!r}",
        f"train.work_dir={str(work_dir)!r}",
        *extra,
    ]


def save_untrained_checkpoint(config: ExperimentConfig, path: Path) -> Path:
    """Save the model that ``config`` builds under seed 0, untrained, as a step-0 checkpoint."""
    torch.manual_seed(0)
    model = build_model(config)
    return save_checkpoint(
        path,
        model=model,
        optimizer=torch.optim.AdamW(model.parameters()),
        scheduler=None,
        scaler=None,
        step=0,
        epoch=0,
        config_dict=to_dict(config),
        seed=0,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for MASTER_PORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_torchrun_environment(rank: int, world_size: int, port: int) -> None:
    """Set the variables torchrun would give process ``rank`` of a group on 127.0.0.1."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


def run_processes(
    worker: Callable[..., None],
    args: tuple,
    nprocs: int,
    timeout_s: float,
    what: str,
    start_method: str = "spawn",
) -> None:
    """Run ``worker(rank, *args)`` in ``nprocs`` new processes and wait for all of them.

    A worker's exception is raised here; if they have not all finished after ``timeout_s``
    seconds, they are killed and the test fails naming ``what`` (so a hung collective cannot
    hang the suite). ``start_method="fork"`` starts in a fraction of spawn's time (no fresh
    imports) but only suits workers that touch no thread pool the parent started.
    """
    context = mp.start_processes(
        worker, args=args, nprocs=nprocs, join=False, start_method=start_method
    )
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{what} did not finish within {timeout_s:g} s")


def load_tool(name: str) -> ModuleType:
    """A script of tools/ as a module (tools/ is no package; ``test`` would be the stdlib's)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def host_of_temp_files() -> str:
    """The host part that this machine's temporary files carry in their names."""
    return temp_path_for(Path("x")).name.split("@")[1].split(".")[0]


def stale_temp_path(target: Path) -> Path:
    """The temporary file that a killed writer of ``target`` on this machine leaves behind."""
    return target.parent / f".{target.name}.{dead_pid()}@{host_of_temp_files()}.0badf00d.tmp"
