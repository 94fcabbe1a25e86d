"""Self-describing training checkpoints: one file per save, written atomically.

A checkpoint is a dict saved with ``torch.save``::

    format      CHECKPOINT_FORMAT
    meta        resolved config dict, git revision, seed, step, epoch, torch version, time
    model       state dict of the bare model (DDP wrapper removed)
    ema         state dict of the EMA teacher, or None
    optimizer   optimizer state dict
    scheduler   learning-rate scheduler state dict, or None
    scaler      GradScaler state dict, or None
    rng         one random-generator state per rank (python, numpy, torch, current CUDA device)
    extra       caller's own state (plain containers, numbers, strings and tensors)

Everything in it loads with ``torch.load(weights_only=True)``, so reading a checkpoint never
runs code from the file. ``step`` counts completed optimizer steps: a run resumed from a
checkpoint of step ``s`` continues with step ``s``.
"""

from __future__ import annotations

import io
import random
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from renderlss.io import atomic_save_torch
from renderlss.train.distributed import (
    all_gather_object,
    is_distributed,
    rank,
    seed_everything,
    unwrap_model,
    world_size,
)

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.pth$")
REQUIRED_FIELDS = ("meta", "model", "ema", "optimizer", "scheduler", "scaler", "rng", "extra")


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable or does not fit the run."""


class NonFiniteWeightsError(RuntimeError):
    """Model or EMA weights holding NaN or infinity, which no checkpoint may keep."""


# How many bad tensors an error names; a diverged model usually has hundreds.
NAMED_BAD_TENSORS = 5


@dataclass
class TrainingState:
    """Where a restored run continues."""

    step: int  # completed optimizer steps; the next step to run
    epoch: int
    seed: int
    meta: dict
    extra: dict
    rng_restored: bool  # False when the saved streams did not fit this run and were re-seeded


def checkpoint_path(work_dir: str | Path, step: int) -> Path:
    """``work_dir/step_000123.pth`` for ``step`` 123."""
    if step < 0:
        raise ValueError(f"checkpoint_path: step must be >= 0, got {step}")
    return Path(work_dir) / f"step_{step:06d}.pth"


def git_revision() -> str:
    """Commit hash of the source tree this package runs from, or ``"unknown"``."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def capture_rng_state() -> dict[str, Any]:
    """Random-generator states of this process (python, numpy, torch CPU, current CUDA device).

    The numpy key is stored as a tensor so that the checkpoint stays loadable with
    ``weights_only=True``; only the current CUDA device is captured because touching every
    device would create a CUDA context on each of them in every process.
    """
    kind, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def apply_rng_state(state: dict[str, Any]) -> None:
    """Set the generators of this process to a state from :func:`capture_rng_state`."""
    numpy_state = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["key"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def gather_rng_states() -> list[dict[str, Any]]:
    """The RNG state of every rank, indexed by rank. A collective: call it on every rank."""
    return all_gather_object(capture_rng_state())


def non_finite_tensors(state: dict[str, Any], prefix: str = "") -> list[str]:
    """Names (``prefix`` + key) of the floating-point tensors of ``state`` holding NaN or
    infinity, in the state dict's order (nested dicts, like the EMA's, by dotted path)."""
    bad = []
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            bad += non_finite_tensors(value, f"{name}.")
        elif (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ):
            bad.append(name)
    return bad


def weight_states(model: nn.Module, ema: Any = None) -> dict[str, dict[str, Any]]:
    """The state dicts a checkpoint stores as weights: ``model`` (bare) and ``ema``."""
    states = {"model": unwrap_model(model).state_dict()}
    if ema is not None:
        states["ema"] = ema.state_dict()
    return states


def require_finite_weights(where: str, states: dict[str, dict[str, Any]]) -> None:
    """Raise unless every floating-point tensor of ``states`` (:func:`weight_states`) is finite.

    Raises:
        NonFiniteWeightsError: ``where``, how many tensors are bad and the first of them.
    """
    bad = non_finite_tensors(states)
    if bad:
        raise NonFiniteWeightsError(
            f"{where}: {len(bad)} weight tensor(s) hold NaN or infinity, e.g. "
            f"{bad[:NAMED_BAD_TENSORS]}; the model diverged (lower train.lr, check the data)"
        )


def require_finite_weights_on_all_ranks(model: nn.Module, ema: Any = None) -> None:
    """:func:`require_finite_weights` agreed by every rank, so that all of them stop together
    when any replica (its own BatchNorm statistics, say) went non-finite. A collective."""
    bad = non_finite_tensors(weight_states(model, ema))
    reports = all_gather_object(bad[:NAMED_BAD_TENSORS] if bad else None)
    failed = {r: names for r, names in enumerate(reports) if names}
    if failed:
        where = ", ".join(f"rank {r}: {names}" for r, names in failed.items())
        raise NonFiniteWeightsError(
            f"weight tensors hold NaN or infinity ({where}); the model diverged and no "
            "checkpoint was written (lower train.lr, check the data)"
        )


def _require_plain_data(path: Path, field: str, value: Any) -> None:
    """Refuse a field that would save but not load with ``weights_only=True``
    (numpy arrays and scalars, custom classes), so that the error comes at save time."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as err:
        raise ValueError(
            f"save_checkpoint({path}): field {field!r} must hold only tensors, numbers, "
            f"strings and containers of them: {err}"
        ) from err


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    step: int,
    epoch: int,
    config_dict: dict,
    seed: int,
    ema: Any = None,
    extra: dict | None = None,
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write one checkpoint file atomically (a failed save leaves no file under ``path``).

    Weights that hold NaN or infinity are refused before anything is written: such a file
    would only resume into the same divergence, and would replace (through pruning) the
    last good checkpoint.

    Args:
        path: the file to write, usually :func:`checkpoint_path`.
        model: the trained model, bare or wrapped in DDP.
        scheduler, scaler, ema: saved when not None (``ema`` needs ``state_dict()``).
        step: completed optimizer steps. epoch: the data epoch the run is in.
        config_dict: the resolved experiment config as plain containers.
        extra: further state of the caller, loadable with ``weights_only=True``.
        rng_states: :func:`gather_rng_states` of all ranks; required in a distributed run
            (where only rank 0 writes), taken from this process when omitted otherwise.

    Returns:
        ``path``.

    Raises:
        NonFiniteWeightsError: a model or EMA tensor is not finite (naming the first ones).
    """
    path = Path(path)
    weights = weight_states(model, ema)
    require_finite_weights(f"save_checkpoint({path})", weights)
    if rng_states is None:
        if is_distributed():
            raise ValueError(
                f"save_checkpoint({path}): in a distributed run pass "
                "rng_states=gather_rng_states(), called on every rank"
            )
        rng_states = [capture_rng_state()]
    _require_plain_data(path, "config_dict", config_dict)
    _require_plain_data(path, "extra", extra)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "meta": {
            "config": config_dict,
            "git_revision": git_revision(),
            "seed": seed,
            "step": step,
            "epoch": epoch,
            "torch_version": str(torch.__version__),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "model": weights["model"],
        "ema": weights.get("ema"),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng": rng_states,
        "extra": extra or {},
    }
    atomic_save_torch(path, checkpoint)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: naming the file when it is missing, truncated, corrupt, of another
            format version, or lacks a field.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint (truncated or corrupt file?): {err}"
        ) from err
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        raise CheckpointError(f"{path}: not a renderlss checkpoint (no 'format' field)")
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {checkpoint['format']!r}, this code reads "
            f"format {CHECKPOINT_FORMAT}"
        )
    missing = [name for name in REQUIRED_FIELDS if name not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: checkpoint field(s) {missing} missing")
    return checkpoint


def list_checkpoints(work_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_*.pth`` file in ``work_dir``, oldest step first."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    found = []
    for path in work_dir.iterdir():
        match = CHECKPOINT_NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(work_dir: str | Path) -> Path | None:
    """The checkpoint of the highest step in ``work_dir``, or None when there is none."""
    found = list_checkpoints(work_dir)
    return found[-1][1] if found else None


def prune_checkpoints(work_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest (highest-step) checkpoints of ``work_dir``.

    Returns:
        the deleted files.
    """
    if keep_last < 1:
        raise ValueError(f"prune_checkpoints: keep_last must be >= 1, got {keep_last}")
    doomed = [path for _, path in list_checkpoints(work_dir)[:-keep_last]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _load_field(path: Path, field: str, target: Any, state: Any) -> None:
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: field {field!r} does not fit this run: {err}") from err


def restore_training_state(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: Any = None,
    map_location: Any = "cpu",
    restore_rng: bool = True,
    log: Callable[[str], None] = print,
) -> TrainingState:
    """Load a checkpoint into the objects of a run so that it continues where it stopped.

    Call it on every rank after building model, optimizer, scheduler, scaler and EMA teacher
    (and after joining the process group). The model is loaded strictly into the bare model.
    Each rank takes its own saved random streams; when the number of saved streams differs
    from the world size (the run was resumed on another number of processes) every rank is
    re-seeded from ``(seed + step, rank)`` instead, and this is logged.

    Raises:
        CheckpointError: naming the file and field when a part is missing or does not fit.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path, map_location)
    meta = checkpoint["meta"]
    _load_field(path, "model", unwrap_model(model), checkpoint["model"])
    parts = [
        ("optimizer", optimizer),
        ("scheduler", scheduler),
        ("ema", ema),
    ]
    for field, target in parts:
        if target is None:
            continue
        if checkpoint[field] is None:
            raise CheckpointError(f"{path}: field {field!r} is empty but this run has a {field}")
        _load_field(path, field, target, checkpoint[field])
    if scaler is not None:
        if checkpoint["scaler"]:
            _load_field(path, "scaler", scaler, checkpoint["scaler"])
        elif scaler.is_enabled():
            log(f"{path}: saved without mixed precision; the gradient scaler starts afresh")
    rng_restored = False
    if restore_rng:
        saved = checkpoint["rng"]
        if len(saved) == world_size():
            apply_rng_state(saved[rank()])
            rng_restored = True
        else:
            seed_everything(meta["seed"] + meta["step"], rank())
            log(
                f"{path}: {len(saved)} saved random stream(s) for {world_size()} process(es); "
                f"re-seeded from seed {meta['seed']} + step {meta['step']} instead"
            )
    return TrainingState(
        step=meta["step"],
        epoch=meta["epoch"],
        seed=meta["seed"],
        meta=meta,
        extra=checkpoint["extra"],
        rng_restored=rng_restored,
    )
