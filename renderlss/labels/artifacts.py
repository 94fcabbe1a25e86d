"""Folders of per-image label artifacts (dense depth, 2D semantic labels): sharding of the
keyframes among machines, the manifest that keeps one folder to one set of builder
parameters, the loop over the keyframes whose images are not done yet, and its summary.
Files are named by ``renderlss.records.files.output_path``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from renderlss.io import atomic_save_json
from renderlss.records.files import output_path
from renderlss.records.infos import info_intrinsic

MANIFEST_NAME = "manifest.json"


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


@dataclass
class BuildSummary:
    """Outcome of a builder over the keyframes of a shard; ``format`` adds ``details``."""

    keyframes: int = 0  # keyframes of this shard
    done: int = 0  # images written
    skipped: int = 0  # images already finished
    failed: list[str] = field(default_factory=list)  # one reason per failure
    seconds: float = 0.0
    failure_unit: str = "images"  # what one reason in ``failed`` stands for

    def details(self) -> list[str]:
        """Lines about the written images (a builder's own statistics)."""
        return []

    def format(self) -> str:
        lines = [
            f"{self.keyframes} keyframes: {self.done} images written, {self.skipped} skipped "
            f"(already done), {len(self.failed)} {self.failure_unit} failed, {self.seconds:.1f} s"
        ]
        if self.done:
            lines += self.details()
        lines += [f"  failed: {reason}" for reason in self.failed]
        return "\n".join(lines)


def pending_keyframes(
    infos: list[dict],
    shard: tuple[int, int],
    out_dir: Path,
    cameras: list[str],
    summary: BuildSummary,
    desc: str,
    show_progress: bool,
) -> Iterator[tuple[int, dict, list[str]]]:
    """``(index, info, cameras whose file is missing)`` of each keyframe of the shard that has
    an image left to build, behind a progress bar.

    Counts the shard's keyframes and the finished images into ``summary`` (and, once the loop
    ends, its seconds); a record without a camera's path, or with a malformed camera matrix
    for an image left to build, fails the keyframe before anything of it is written.
    """
    start = time.perf_counter()
    indices = shard_indices(len(infos), shard)
    summary.keyframes = len(indices)
    for index in tqdm(indices, desc=desc, unit="keyframe", disable=not show_progress):
        info = infos[index]
        try:
            pending = [
                cam
                for cam in cameras
                if not output_path(out_dir, cam, info["cams"][cam]["data_path"]).is_file()
            ]
            for cam in pending:
                info_intrinsic(info["cams"][cam], f"sample {info['token']}, camera {cam}")
        except KeyError as err:
            summary.failed.append(f"sample {info.get('token', index)}: field {err} missing")
            continue
        except ValueError as err:
            summary.failed.append(str(err))
            continue
        summary.skipped += len(cameras) - len(pending)
        if pending:
            yield index, info, pending
    summary.seconds += time.perf_counter() - start
