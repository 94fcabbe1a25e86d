"""The per-step log of a run, ``<work_dir>/metrics.jsonl``: one JSON object per line.

Every line is strict JSON: a NaN or infinite value (a skipped step's loss, say) is written
as ``null``, since ``NaN`` and ``Infinity`` are not JSON and most readers refuse them. A run
resumed from the checkpoint of step ``s`` repeats the steps after ``s`` that the interrupted
run had logged, so the log is first cut back to the records of steps ``<= s``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from renderlss.io import atomic_write_text


def finite_or_null(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with every non-finite float replaced by None."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in record.items()
    }


def record_line(record: Mapping[str, Any]) -> str:
    """One log line (with its newline) of ``record``: strict JSON, non-finite floats null."""
    return json.dumps(finite_or_null(record), allow_nan=False) + "\n"


def append_record(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` to the log at ``path`` (created if missing)."""
    with open(path, "a") as handle:
        handle.write(record_line(record))


def cut_log_after(path: str | Path, step: int) -> int:
    """Rewrite the log at ``path`` atomically with only the records of steps ``<= step``.

    Lines that are no JSON object with an integer ``step`` (the half-written last line of a
    killed run) are dropped too, and kept records are rewritten as :func:`record_line`
    writes them. Nothing happens when there is no log or nothing to drop.

    Returns:
        the number of lines dropped.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    records = [_record_of(line) for line in lines]
    kept = [record for record in records if record is not None and record["step"] <= step]
    if len(kept) < len(lines):
        atomic_write_text(path, "".join(record_line(record) for record in kept))
    return len(lines) - len(kept)


def _record_of(line: str) -> dict[str, Any] | None:
    """The record of a log line, or None when the line is none (truncated, empty)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or type(record.get("step")) is not int:
        return None
    return record
