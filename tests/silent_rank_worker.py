"""The processes of the silent-rank test (tests/test_run_faults.py), in a module of their own
so that each spawned process imports torch and the distributed module only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from helpers import set_torchrun_environment

from renderlss.train.distributed import (
    CollectiveTimeoutError,
    all_reduce_sum,
    init_distributed,
    report_unanswered_ranks,
)

WORLD_SIZE = 2
TIMEOUT_S = 2.0


def wait_for_each_other(rank: int, folder: Path) -> None:
    """Return once every process got here, so that slow imports on a busy machine do not
    eat into the short timeout of joining the group."""
    (folder / f"ready{rank}").touch()
    while not all((folder / f"ready{r}").exists() for r in range(WORLD_SIZE)):
        time.sleep(0.05)


def silent_rank(rank: int, port: int, folder: str) -> None:
    """Rank 1 stays away from the collective; rank 0 records how its wait ended in
    ``folder/rank0.json``: the error message and the seconds it waited."""
    set_torchrun_environment(rank, WORLD_SIZE, port)
    wait_for_each_other(rank, Path(folder))
    init_distributed(device="cpu", timeout_s=TIMEOUT_S)
    if rank == 1:
        time.sleep(3 * TIMEOUT_S)  # past rank 0's timeout and its roll call
        return
    started = time.monotonic()
    try:
        with report_unanswered_ranks(lambda: 7):
            all_reduce_sum(torch.ones(2))
    except CollectiveTimeoutError as err:
        waited = time.monotonic() - started
        (Path(folder) / "rank0.json").write_text(json.dumps([str(err), waited]))
