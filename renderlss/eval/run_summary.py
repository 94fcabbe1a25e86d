"""Rows of a results table from the metrics files of repeated runs (one file per seed):
the mean and half range of each metric over the seeds, and the share of a gap between two
rows that a third one recovers."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Spread:
    """Mean and half range (max - min) / 2 of a metric over runs; ``n`` runs had a value."""

    mean: float
    half_range: float
    n: int


def spread(values: list[float]) -> Spread:
    """:class:`Spread` of the finite ``values`` (NaN mean when none is finite)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Spread(math.nan, math.nan, 0)
    return Spread(sum(finite) / len(finite), (max(finite) - min(finite)) / 2, len(finite))


def gap_share(low: float, high: float, value: float) -> float:
    """Share of the gap from ``low`` to ``high`` that ``value`` recovers: 0 at ``low``, 1 at
    ``high`` (NaN when the gap is 0)."""
    if high == low:
        return math.nan
    return (value - low) / (high - low)


def read_metrics(path: str | Path) -> dict[str, float]:
    """The ``metrics`` of a ``tools/test.py --out`` file (null values as NaN)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable metrics file: {err}") from err
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError(f"{path}: no 'metrics' object (write it with tools/test.py --out)")
    return {k: math.nan if v is None else float(v) for k, v in record["metrics"].items()}


def row_spreads(runs: list[dict[str, float]], keys: list[str]) -> dict[str, Spread]:
    """Per metric key, the :class:`Spread` over ``runs`` (a run without the key counts as
    missing)."""
    return {key: spread([run.get(key, math.nan) for run in runs]) for key in keys}


def format_spread(value: Spread, digits: int) -> str:
    """``mean ± half range`` (only the mean for a single run, ``–`` for none)."""
    if value.n == 0:
        return "–"
    if value.n == 1:
        return f"{value.mean:.{digits}f}"
    return f"{value.mean:.{digits}f} ± {value.half_range:.{digits}f}"


# What :func:`training_cost` reports, as metric keys a table can show next to the scores.
TRAINING_COST_KEYS = ("train/samples_per_s", "train/peak_memory_mb")


def training_cost(path: str | Path) -> dict[str, float]:
    """Speed and memory of a training run from its ``metrics.jsonl`` (one JSON record per
    logged step, written by the trainer): the median ``samples_per_s`` over the logged steps
    (robust to the slow first steps and to checkpoint saves) and the largest ``memory_mb``
    (the peak CUDA allocation, or the process's peak resident set on CPU).

    Raises:
        ValueError: the file is unreadable or has no step with both fields, naming it.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable training log: {err}") from err
    steps = [r for r in records if "samples_per_s" in r and "memory_mb" in r]
    if not steps:
        raise ValueError(f"{path}: no step with samples_per_s and memory_mb")
    return {
        TRAINING_COST_KEYS[0]: statistics.median(float(r["samples_per_s"]) for r in steps),
        TRAINING_COST_KEYS[1]: max(float(r["memory_mb"]) for r in steps),
    }
