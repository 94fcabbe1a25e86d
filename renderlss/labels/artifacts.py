"""Folders of per-image label artifacts (dense depth, 2D semantic labels): file naming,
sharding of the keyframes among machines, and the manifest that keeps one folder to one set
of builder parameters."""

from __future__ import annotations

import json
from pathlib import Path

from renderlss.io import atomic_save_json

MANIFEST_NAME = "manifest.json"


def output_path(out_dir: str | Path, camera: str, image_path: str) -> Path:
    """``<out>/<CAM>/<image file stem>.npz`` of one camera image."""
    return Path(out_dir) / camera / f"{Path(image_path).stem}.npz"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as err:
        raise ValueError(f"shard {text!r}: expected i/n, e.g. 0/4") from err
    if not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return index, count


def shard_indices(total: int, shard: tuple[int, int]) -> list[int]:
    """Keyframe indices of shard ``(i, n)``: every n-th keyframe starting at i, so shards
    get equal shares of every scene."""
    index, count = shard
    return list(range(index, total, count))


def write_or_check_manifest(out_dir: Path, expected: dict) -> None:
    """Write the manifest, or refuse an output folder built with other parameters (finished
    files from one configuration must not be mixed with another's)."""
    path = out_dir / MANIFEST_NAME
    expected = json.loads(json.dumps(expected))  # tuples -> lists, as read back
    if not path.is_file():
        atomic_save_json(path, expected)
        return
    try:
        existing = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if existing == expected:
        return
    old, new = existing.get("config", {}), expected["config"]
    differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    raise ValueError(
        f"{path}: this folder was built with other parameters "
        f"({', '.join(differing) or 'format, version or cameras'}); use another --out or "
        "remove it"
    )
