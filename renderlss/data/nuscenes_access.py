"""A thin layer over nuscenes-devkit: open a dataroot with clear errors, read validated poses,
and walk scenes and sensor chains. Everything here reads; nothing builds project formats."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile

import numpy as np
from nuscenes.nuscenes import NuScenes

from renderlss.geometry import corner_convention_intrinsic, pose_matrix, validated_intrinsic

LIDAR_CHANNEL = "LIDAR_TOP"
LIDARSEG_TABLE = "lidarseg"


def available_versions(dataroot: str) -> list[str]:
    """Sub-folders of ``dataroot`` that hold nuScenes tables (``<version>/sample.json``)."""
    if not os.path.isdir(dataroot):
        return []
    return sorted(
        d for d in os.listdir(dataroot) if os.path.isfile(os.path.join(dataroot, d, "sample.json"))
    )


def read_lidarseg_table(dataroot: str, version: str) -> list[dict]:
    """Records of ``<dataroot>/<version>/lidarseg.json``, read without the devkit (empty
    when the dataroot has no lidarseg table).

    Raises:
        ValueError: the table is unreadable or a record lacks ``sample_data_token`` or
            ``filename``, naming the file.
    """
    path = os.path.join(dataroot, version, f"{LIDARSEG_TABLE}.json")
    if not os.path.isfile(path):
        return []
    try:
        with open(path) as handle:
            records = json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable lidarseg table ({err})") from err
    fields = ("sample_data_token", "filename")
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and all(f in r for f in fields) for r in records
    ):
        raise ValueError(f"{path}: expected a list of records with fields {fields}")
    return records


def missing_lidarseg_files(dataroot: str, records: list[dict]) -> list[str]:
    """Label files (relative to the dataroot) that lidarseg ``records`` name but the dataroot
    lacks, in table order."""
    return [
        r["filename"] for r in records if not os.path.isfile(os.path.join(dataroot, r["filename"]))
    ]


def _devkit_without_lidarseg(dataroot: str, version: str) -> NuScenes:
    """The devkit on a dataroot whose lidarseg table it would refuse: it asserts that the
    label folder holds exactly one file per record, naming none. It reads every other table
    through a temporary folder of links, so the samples with missing label files can be
    skipped by name instead."""
    with tempfile.TemporaryDirectory(prefix="renderlss-tables-") as view:
        for entry in os.listdir(dataroot):
            if entry != version:
                os.symlink(os.path.join(dataroot, entry), os.path.join(view, entry))
        os.mkdir(os.path.join(view, version))
        for name in os.listdir(os.path.join(dataroot, version)):
            if name != f"{LIDARSEG_TABLE}.json":
                os.symlink(os.path.join(dataroot, version, name), os.path.join(view, version, name))
        nusc = NuScenes(version=version, dataroot=view, verbose=False)
    nusc.dataroot = dataroot
    for map_record in nusc.map:  # map masks load lazily from the path given at init
        map_record["mask"].img_file = os.path.join(dataroot, map_record["filename"])
    return nusc


def open_nuscenes(dataroot: str, version: str) -> NuScenes:
    """Load a nuScenes-format dataroot through the devkit, quietly.

    A lidarseg table naming label files that are not on disk is kept as it is (as
    ``nusc.lidarseg``); :func:`missing_lidarseg_files` lists them.

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
    lidarseg = read_lidarseg_table(dataroot, version)
    # The devkit prints progress even with verbose=False in places; keep tool output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            if not missing_lidarseg_files(dataroot, lidarseg):
                return NuScenes(version=version, dataroot=dataroot, verbose=False)
            nusc = _devkit_without_lidarseg(dataroot, version)
        except (AssertionError, KeyError, FileNotFoundError, OSError) as err:
            raise ValueError(f"{table_root}: nuscenes-devkit could not load it: {err!r}") from err
    nusc.lidarseg = lidarseg
    return nusc


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


def camera_intrinsic(nusc: NuScenes, calibrated_sensor_token: str, user: str) -> list[list[float]]:
    """Validated [3, 3] camera matrix of a calibrated_sensor record, as nested lists, in
    renderlss's pixel convention (the stored matrix's principal point + 0.5 px, docs/formats.md).

    Args:
        user: the record that needs it (e.g. ``sample <token>, camera <channel>``), named in
            the error next to the table file, token and field.
    Raises:
        ValueError: no valid camera matrix (see ``renderlss.geometry.intrinsics``).
    """
    value = nusc.get("calibrated_sensor", calibrated_sensor_token)["camera_intrinsic"]
    where = f"{table_file(nusc, 'calibrated_sensor')}: token {calibrated_sensor_token} ({user})"
    matrix = validated_intrinsic(value, f"{where}, field 'camera_intrinsic'")
    return corner_convention_intrinsic(matrix).tolist()


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
