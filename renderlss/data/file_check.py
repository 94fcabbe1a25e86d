"""The content pass of ``tools/create_data.py --check-files``: every camera image, keyframe
LiDAR file, lidarseg file, sweep and Occ3D label file that info records reference is opened
with the readers that training and the label builders use, and every problem is collected,
so that one run lists all that needs fixing instead of stopping at the first (or training on
grey rows)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from renderlss.data.dataset import load_occ_labels
from renderlss.records.files import read_rgb_image
from renderlss.targets.lidar import load_lidar_points, load_lidarseg_labels

# The readers spend their time in numpy / OpenCV code that releases the GIL, so threads
# overlap file reads and decoding.
MAX_CHECK_THREADS = 8


@dataclass(frozen=True)
class FileCheck:
    """One file to open: ``kind`` is ``image``, ``lidar`` (the keyframe sweep, read with its
    lidarseg file ``labels`` when there is one), ``sweep`` or ``occ`` (Occ3D labels); paths
    are as the record names them (relative to the dataroot or absolute)."""

    sample: str
    kind: str
    path: str
    camera: str = ""
    size: tuple[int, int] = (0, 0)  # (H, W) the record states for an image; 0 = unknown
    labels: str = ""


@dataclass(frozen=True)
class FileProblem:
    """A referenced file that cannot be used: ``message`` names the file and what is wrong."""

    sample: str  # the first sample that references the file
    path: str
    message: str

    def format(self) -> str:
        return f"sample {self.sample}: {self.message}"


def file_checks(infos: list[dict]) -> list[FileCheck]:
    """What to open for the records, each file once (sweeps are shared between keyframes:
    a file is checked for the first record that names it)."""
    checks, seen = [], set()

    def add(check: FileCheck) -> None:
        if check.path and check.path not in seen:
            seen.add(check.path)
            checks.append(check)

    for info in infos:
        token = info["token"]
        for camera, cam in info["cams"].items():
            size = (int(cam.get("height", 0)), int(cam.get("width", 0)))
            add(FileCheck(token, "image", cam["data_path"], camera=camera, size=size))
        add(FileCheck(token, "lidar", info["lidar_path"], labels=info.get("lidarseg_path", "")))
        for sweep in info["sweeps"]:
            add(FileCheck(token, "sweep", sweep["data_path"]))
        add(FileCheck(token, "occ", info.get("occ_path", "")))
    return checks


def run_check(check: FileCheck, dataroot: str | Path) -> FileProblem | None:
    """Open one file (and its lidarseg file) with the project's readers; None when usable."""
    path = os.path.join(dataroot, check.path)
    try:
        if check.kind == "image":
            read_rgb_image(path, f"camera {check.camera}", check.size)
        elif check.kind == "occ":
            load_occ_labels(path, check.sample, None)
        else:
            points = load_lidar_points(path)
            if check.labels:
                path = os.path.join(dataroot, check.labels)
                load_lidarseg_labels(path, len(points))
    except (OSError, ValueError) as err:
        return FileProblem(check.sample, path, str(err))
    return None


def check_info_files(
    infos: list[dict], dataroot: str | Path, show_progress: bool = True
) -> tuple[int, list[FileProblem]]:
    """Open every file the records reference (see :func:`file_checks`).

    Returns:
        The number of files checked, and every problem found, in record order.
    """
    checks = file_checks(infos)
    threads = min(MAX_CHECK_THREADS, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        results = pool.map(lambda check: run_check(check, dataroot), checks)
        bar = tqdm(results, total=len(checks), desc="files", unit="file", disable=not show_progress)
        problems = [problem for problem in bar if problem is not None]
    return len(checks), problems
