"""Process groups and collectives for single-process and torchrun training through the same code.

``torchrun`` starts one process per device and tells each its place through environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). With
``WORLD_SIZE`` unset or 1 no process group is created and every function here falls back to its
single-process meaning, so a run can be debugged in one plain Python process.

Convention: BatchNorm layers are never converted to SyncBatchNorm. Each process normalises
with the statistics of its own batch; this keeps CPU (gloo) and GPU (nccl) runs on the same
code path and avoids one collective per BatchNorm layer in every forward pass.

A rank that stops answering (stopped, swapped out, stuck in I/O) makes every collective of
the others wait; after the process group's timeout the waiting ranks fail. Under
:func:`report_unanswered_ranks` such a failure becomes a :class:`CollectiveTimeoutError` that
names the ranks that did not answer a roll call in the rendezvous store, and the step.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 600.0
# The longest a failed rank waits for the others to answer its roll call: ranks blocked in
# the same collective fail within about one step of each other, not one timeout.
ROLL_CALL_WAIT_S = 60.0
ROLL_CALL_KEY = "renderlss/answered/"
_rendezvous: dict[str, Any] = {}  # the store and timeout of the group this process joined


class CollectiveTimeoutError(RuntimeError):
    """A collective that failed because another rank did not answer in time (or died)."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_distributed: bool


def _require_env(name: str) -> str:
    text = os.environ.get(name)
    if not text:
        raise RuntimeError(
            f"environment variable {name} is not set; a multi-process run needs all of "
            f"{', '.join(TORCHRUN_VARIABLES)} (start it with torchrun)"
        )
    return text


def _env_int(name: str) -> int:
    text = _require_env(name)
    try:
        return int(text)
    except ValueError as err:
        raise RuntimeError(f"environment variable {name}={text!r} is not an integer") from err


def _select_device(device: str, local_rank: int) -> torch.device:
    """``"auto"`` -> this process's CUDA device when CUDA is present, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank)
    return chosen


def init_distributed(
    backend: str = "auto", device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S
) -> DistInfo:
    """Join the process group that torchrun describes in the environment, if there is one.

    Args:
        backend: ``"auto"`` (nccl for CUDA devices, gloo for CPU), ``"gloo"`` or ``"nccl"``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` (this process's
            ``LOCAL_RANK`` device) or an explicit ``"cuda:k"``.
        timeout_s: how long a collective waits for the other ranks before it fails (and
            how long joining waits for all of them to arrive).

    Returns:
        the rank, world size, local rank and device of this process. With ``WORLD_SIZE``
        unset or 1 nothing is initialised and ``is_distributed`` is False.
    """
    if backend not in ("auto", "gloo", "nccl"):
        raise ValueError(f"init_distributed: backend must be auto, gloo or nccl, got {backend!r}")
    world_size = _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
    if world_size < 1:
        raise RuntimeError(f"environment variable WORLD_SIZE={world_size} must be >= 1")
    if world_size == 1:
        return DistInfo(0, 1, 0, _select_device(device, 0), is_distributed=False)
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK")
    _require_env("MASTER_ADDR")
    _env_int("MASTER_PORT")
    if not 0 <= rank < world_size:
        raise RuntimeError(f"environment variable RANK={rank} is outside [0, {world_size})")
    if not timeout_s > 0:
        raise ValueError(f"init_distributed: timeout_s must be > 0, got {timeout_s}")
    chosen = _select_device(device, local_rank)
    if backend == "auto":
        backend = "nccl" if chosen.type == "cuda" else "gloo"
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        # The env:// rendezvous that init_process_group would do, done here to keep its store
        # for the roll call; the prefix keeps the group's keys apart, as init_process_group's.
        store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
        store.set_timeout(timeout)
        dist.init_process_group(
            backend,
            store=dist.PrefixStore("default_pg", store),
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
        _rendezvous.update(store=store, timeout_s=timeout_s)
    return DistInfo(rank, world_size, local_rank, chosen, is_distributed=True)


def unanswered_ranks(wait_s: float) -> list[int]:
    """The ranks that do not answer a roll call in the rendezvous store within ``wait_s``.

    Each rank that calls this answers for itself and waits for the others; a rank that never
    calls it (stopped, hung in a collective that has not timed out) is listed. When the store
    itself does not answer, rank 0, which holds it, is the one listed.
    """
    store = _rendezvous["store"]
    me, ranks = rank(), range(world_size())
    store.set_timeout(timedelta(seconds=max(wait_s, 1.0)))
    try:
        store.set(f"{ROLL_CALL_KEY}{me}", "1")
        deadline = time.monotonic() + wait_s
        while True:
            missing = [r for r in ranks if not store.check([f"{ROLL_CALL_KEY}{r}"])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)
    except RuntimeError:
        return [0] if me != 0 else []


def is_collective_failure(err: BaseException) -> bool:
    """Whether ``err`` is a collective's failure: a timeout or a lost peer (gloo raises a
    plain RuntimeError whose message comes from its sources, nccl a DistBackendError)."""
    return isinstance(err, dist.DistError) or (isinstance(err, RuntimeError) and "gloo" in str(err))


@contextlib.contextmanager
def report_unanswered_ranks(step: Callable[[], int]) -> Iterator[None]:
    """Turn a collective's failure inside the block into a :class:`CollectiveTimeoutError`
    naming the ranks that did not answer and the step (``step()`` at the failure).

    Outside a process group, and for any other exception, the block's errors pass unchanged.
    """
    try:
        yield
    except RuntimeError as err:
        if not (is_distributed() and _rendezvous and is_collective_failure(err)):
            raise
        at_step = step()
        silent = unanswered_ranks(min(ROLL_CALL_WAIT_S, _rendezvous["timeout_s"]))
        who = f"rank(s) {silent} did not answer" if silent else "every rank answered later"
        raise CollectiveTimeoutError(
            f"rank {rank()}: a collective at step {at_step} failed after waiting up to "
            f"{_rendezvous['timeout_s']:g} s (train.dist_timeout_s): {who}; {err}"
        ) from err


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the run (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, and in a single-process run."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (nothing to wait for without a process group)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``tensor`` over all processes, as a new tensor (input untouched)."""
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``tensor`` over all processes (integers are promoted to float)."""
    values = tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())
    return all_reduce_sum(values) / world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every process (any picklable object)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(obj: Any) -> list[Any]:
    """The ``obj`` of every process, indexed by rank (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def cleanup() -> None:
    """Leave the process group, if this process is in one."""
    if is_distributed():
        dist.destroy_process_group()
    _rendezvous.clear()


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``seed + rank``.

    Each rank gets its own stream so that random augmentation and ray sampling differ across
    processes, while the run as a whole stays reproducible from ``seed``.

    Returns:
        the seed this process used.
    """
    process_seed = seed + rank
    if not 0 <= process_seed < 2**32:
        raise ValueError(f"seed_everything: seed + rank = {process_seed} must be in [0, 2**32)")
    random.seed(process_seed)
    np.random.seed(process_seed)
    torch.manual_seed(process_seed)  # seeds the CUDA generators as well
    return process_seed


def wrap_model(model: nn.Module, info: DistInfo, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel in a distributed run, else as given.

    The model must already be on ``info.device``; BatchNorm stays per-process (no SyncBN).
    """
    if not info.is_distributed:
        return model
    device_ids = [info.device] if info.device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a (Distributed)DataParallel wrapper, or ``model`` itself."""
    if isinstance(model, DistributedDataParallel | nn.DataParallel):
        return model.module
    return model
