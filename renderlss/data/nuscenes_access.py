"""A thin layer over nuscenes-devkit: open a dataroot with clear errors, read validated poses,
and walk scenes and sensor chains. Everything here reads; nothing builds project formats."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
from nuscenes.nuscenes import NuScenes

from renderlss.geometry import pose_matrix

LIDAR_CHANNEL = "LIDAR_TOP"


def available_versions(dataroot: str) -> list[str]:
    """Sub-folders of ``dataroot`` that hold nuScenes tables (``<version>/sample.json``)."""
    if not os.path.isdir(dataroot):
        return []
    return sorted(
        d for d in os.listdir(dataroot) if os.path.isfile(os.path.join(dataroot, d, "sample.json"))
    )


def open_nuscenes(dataroot: str, version: str) -> NuScenes:
    """Load a nuScenes-format dataroot through the devkit, quietly.

    Raises:
        FileNotFoundError: the dataroot or its ``<version>`` folder does not exist.
        ValueError: the devkit rejects the tables (its message is kept).
    """
    dataroot = os.path.abspath(dataroot)
    if not os.path.isdir(dataroot):
        raise FileNotFoundError(f"dataroot {dataroot} does not exist")
    table_root = os.path.join(dataroot, version)
    if not os.path.isdir(table_root):
        found = available_versions(dataroot)
        raise FileNotFoundError(
            f"{table_root}: no folder for version {version!r} in dataroot {dataroot} "
            f"(versions found: {found or 'none'})"
        )
    # The devkit prints progress even with verbose=False in places; keep tool output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return NuScenes(version=version, dataroot=dataroot, verbose=False)
        except (AssertionError, KeyError, FileNotFoundError, OSError) as err:
            raise ValueError(f"{table_root}: nuscenes-devkit could not load it: {err!r}") from err


def table_file(nusc: NuScenes, table: str) -> str:
    """Path of a table's JSON file (for error messages)."""
    return os.path.join(nusc.table_root, f"{table}.json")


def rotation_translation(nusc: NuScenes, table: str, token: str) -> tuple[list, list]:
    """Validated ``(rotation [w, x, y, z], translation [x, y, z])`` of a pose-like record.

    Args:
        table: ``calibrated_sensor`` (sensor->ego), ``ego_pose`` (ego->global) or
            ``sample_annotation`` (box->global).
    Raises:
        ValueError: naming the table file, token and field, for a non-unit or malformed
            quaternion or a malformed translation.
    """
    record = nusc.get(table, token)
    where = f"{table_file(nusc, table)}: token {token}, field"
    pose_matrix(record["rotation"], record["translation"], f"{where} 'rotation'/'translation'")
    return list(map(float, record["rotation"])), list(map(float, record["translation"]))


def record_pose(nusc: NuScenes, table: str, token: str) -> np.ndarray:
    """[4, 4] float64 pose of a validated record (see :func:`rotation_translation`)."""
    rotation, translation = rotation_translation(nusc, table, token)
    return pose_matrix(rotation, translation)


def camera_intrinsic(nusc: NuScenes, calibrated_sensor_token: str) -> list[list[float]]:
    """Validated [3, 3] camera matrix of a calibrated_sensor record, as nested lists."""
    k = np.asarray(nusc.get("calibrated_sensor", calibrated_sensor_token)["camera_intrinsic"])
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(
            f"{table_file(nusc, 'calibrated_sensor')}: token {calibrated_sensor_token}, field "
            f"'camera_intrinsic' is not a finite 3x3 matrix with positive focal lengths: "
            f"{k.tolist()}"
        )
    return k.astype(np.float64).tolist()


def scene_sample_tokens(nusc: NuScenes, scene: dict) -> list[str]:
    """Sample tokens of a scene in time order (following ``next`` from the first sample)."""
    tokens = []
    token = scene["first_sample_token"]
    while token:
        tokens.append(token)
        token = nusc.get("sample", token)["next"]
    return tokens


def previous_sample_data(nusc: NuScenes, sample_data_token: str, count: int) -> list[dict]:
    """Up to ``count`` sample_data records before the given one on the same sensor, newest
    first (sweeps and earlier keyframes alike, as the sensor recorded them)."""
    records = []
    token = nusc.get("sample_data", sample_data_token)["prev"]
    while token and len(records) < count:
        record = nusc.get("sample_data", token)
        records.append(record)
        token = record["prev"]
    return records


def camera_channels(nusc: NuScenes) -> list[str]:
    """Channels of the camera sensors, in the order of the sensor table."""
    return [s["channel"] for s in nusc.sensor if s["modality"] == "camera"]


def lidarseg_filenames(nusc: NuScenes) -> dict[str, str]:
    """LiDAR sample_data token -> lidarseg label file (relative to the dataroot); empty when
    the dataroot has no lidarseg table."""
    return {r["sample_data_token"]: r["filename"] for r in getattr(nusc, "lidarseg", [])}
