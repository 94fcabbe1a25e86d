"""Info records of the camera frames between keyframes, which carry no labels.

nuScenes labels 2 Hz keyframes, but its cameras record at 12 Hz (``sweeps/CAM_*``). The
frames in between are grouped into camera-frame groups: each non-keyframe image of the
anchor camera (the first camera channel) together with, for every other camera, its
non-keyframe image nearest in time. Every camera keeps its own timestamp and ego pose, as
in the keyframe records; the group's key-ego frame is the ego pose of the LiDAR sweep
nearest to the mean camera time, whose path, pose and calibration the record carries.

A record has the layout of a keyframe record (docs/formats.md), so ``OccDataset`` reads it:
``token`` is the anchor image's sample_data token, ``prev`` / ``next`` link the groups of a
scene in time, there are no boxes, no ``occ_path`` and no ``lidarseg_path``, and
``labeled`` is False (``renderlss.data.unlabeled``). Groups that lack a camera frame or a
LiDAR sweep within the allowed time offsets are left out, each with a reason.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nuscenes.nuscenes import NuScenes
from tqdm import tqdm

from renderlss.data.info_builder import (
    _check_files_exist,
    _pose_fields,
    _sensor_record_fields,
)
from renderlss.data.nuscenes_access import (
    LIDAR_CHANNEL,
    camera_channels,
    camera_intrinsic,
    open_nuscenes,
    previous_sample_data,
)
from renderlss.data.splits import split_scenes
from renderlss.data.unlabeled import LABELED_FIELD
from renderlss.records.infos import BOX_FIELDS, INFO_FORMAT, INFO_FORMAT_VERSION, save_infos

# At 12 Hz a camera frame is 83 ms from the next; the cameras of one trigger fire within
# one 50 ms LiDAR revolution, so 50 ms holds a group together without reaching a
# neighbouring trigger. A 20 Hz LiDAR always has a sweep within 25 ms.
DEFAULT_MAX_CAMERA_OFFSET_US = 50_000
DEFAULT_MAX_LIDAR_OFFSET_US = 50_000


def unlabeled_info_path(out_dir: str | Path, prefix: str, split: str) -> Path:
    """``<out_dir>/<prefix>_infos_<split>_unlabeled.pkl``."""
    return Path(out_dir) / f"{prefix}_infos_{split}_unlabeled.pkl"


def scene_sensor_chain(nusc: NuScenes, scene: dict, channel: str) -> list[dict]:
    """Every sample_data record of one sensor in one scene, in time order (the chain through
    the first keyframe's record, keyframes and sweeps alike)."""
    first = nusc.get("sample", scene["first_sample_token"])
    if channel not in first["data"]:
        return []
    record = nusc.get("sample_data", first["data"][channel])
    while record["prev"]:
        record = nusc.get("sample_data", record["prev"])
    chain = [record]
    while chain[-1]["next"]:
        chain.append(nusc.get("sample_data", chain[-1]["next"]))
    return [
        r for r in chain if nusc.get("sample", r["sample_token"])["scene_token"] == scene["token"]
    ]


def nearest_record(chain: list[dict], times: list[int], timestamp: int) -> tuple[dict | None, int]:
    """The record of a time-ordered chain nearest to ``timestamp`` and its offset in
    microseconds (None and 0 for an empty chain). ``times``: the chain's timestamps."""
    if not chain:
        return None, 0
    i = bisect.bisect_left(times, timestamp)
    best = min(
        (j for j in (i - 1, i) if 0 <= j < len(chain)), key=lambda j: abs(times[j] - timestamp)
    )
    return chain[best], abs(times[best] - timestamp)


def camera_group_fields(nusc: NuScenes, sample_data: dict, channel: str) -> dict:
    """The ``cams[channel]`` entry of a record, from any camera sample_data record."""
    return dict(
        _sensor_record_fields(nusc, sample_data),
        cam_intrinsic=camera_intrinsic(
            nusc, sample_data["calibrated_sensor_token"], f"sample_data {sample_data['token']}"
        ),
        width=int(sample_data["width"]),
        height=int(sample_data["height"]),
    )


def _no_labels() -> dict:
    """The box and label fields of a record without labels."""
    return dict(
        gt_boxes=np.zeros((0, len(BOX_FIELDS)), dtype=np.float32),
        gt_velocity=np.zeros((0, 2), dtype=np.float32),
        gt_names=[],
        instance_tokens=[],
        num_lidar_pts=np.zeros(0, dtype=np.int64),
        occ_path="",
        lidarseg_path="",
        **{LABELED_FIELD: False},
    )


def camera_groups(
    chains: dict[str, list[dict]], cameras: list[str], max_offset_us: int
) -> tuple[list[dict[str, dict]], list[str]]:
    """Camera-frame groups of one scene: {camera: sample_data record} each, in time order.

    Args:
        chains: per camera, its time-ordered records in the scene (keyframes included).
        cameras: camera channels; the first is the anchor.
        max_offset_us: the largest time offset of a camera's frame from the anchor's.
    Returns:
        groups, and one reason per anchor frame left out.
    """
    anchor, others = cameras[0], cameras[1:]
    times = {cam: [int(r["timestamp"]) for r in chains[cam]] for cam in others}
    groups, skipped, used = [], [], set()
    for frame in (r for r in chains[anchor] if not r["is_key_frame"]):
        group, reason = {anchor: frame}, ""
        for cam in others:
            record, offset = nearest_record(chains[cam], times[cam], int(frame["timestamp"]))
            if record is None or offset > max_offset_us:
                reason = f"{cam} has no frame within {max_offset_us} us"
            elif record["is_key_frame"]:
                reason = f"the nearest {cam} frame {record['token']} is a keyframe"
            elif record["token"] in used:
                reason = f"the nearest {cam} frame {record['token']} is in the previous group"
            if reason:
                break
            group[cam] = record
        if reason:
            skipped.append(f"{anchor} sample_data {frame['token']}: {reason}")
            continue
        used.update(r["token"] for r in group.values())
        groups.append(group)
    return groups, skipped


def build_scene_unlabeled_infos(
    nusc: NuScenes,
    scene: dict,
    cameras: list[str],
    max_sweeps: int,
    max_camera_offset_us: int = DEFAULT_MAX_CAMERA_OFFSET_US,
    max_lidar_offset_us: int = DEFAULT_MAX_LIDAR_OFFSET_US,
) -> tuple[list[dict], list[str]]:
    """The unlabeled records of one scene, in time order, and one reason per group left out.

    Raises:
        ValueError: a malformed pose or intrinsic (naming table, token and field).
        MissingFileError: a referenced file is not on disk (naming it and the record).
    """
    chains = {cam: scene_sensor_chain(nusc, scene, cam) for cam in cameras}
    lidar_chain = scene_sensor_chain(nusc, scene, LIDAR_CHANNEL)
    lidar_times = [int(r["timestamp"]) for r in lidar_chain]
    groups, skipped = camera_groups(chains, cameras, max_camera_offset_us)
    infos = []
    for group in groups:
        anchor = group[cameras[0]]
        group_time = round(np.mean([int(r["timestamp"]) for r in group.values()]))
        lidar, offset = nearest_record(lidar_chain, lidar_times, group_time)
        if lidar is None or offset > max_lidar_offset_us:
            skipped.append(
                f"{cameras[0]} sample_data {anchor['token']}: no {LIDAR_CHANNEL} sweep within "
                f"{max_lidar_offset_us} us"
            )
            continue
        info = dict(
            token=anchor["token"],
            scene_token=scene["token"],
            scene_name=scene["name"],
            timestamp=int(lidar["timestamp"]),
            lidar_token=lidar["token"],
            lidar_path=lidar["filename"],
            **_pose_fields(
                nusc, "calibrated_sensor", lidar["calibrated_sensor_token"], "lidar2ego"
            ),
            **_pose_fields(nusc, "ego_pose", lidar["ego_pose_token"], "ego2global"),
            sweeps=[
                _sensor_record_fields(nusc, sd)
                for sd in previous_sample_data(nusc, lidar["token"], max_sweeps)
            ],
            cams={cam: camera_group_fields(nusc, group[cam], cam) for cam in cameras},
            **_no_labels(),
        )
        _check_files_exist(nusc.dataroot, info)
        infos.append(info)
    for i, info in enumerate(infos):
        info["prev"] = infos[i - 1]["token"] if i > 0 else ""
        info["next"] = infos[i + 1]["token"] if i + 1 < len(infos) else ""
    return infos, skipped


@dataclass
class UnlabeledSplitReport:
    """What went into one unlabeled info file."""

    path: str
    scenes: int
    records: int
    skipped: list[str] = field(default_factory=list)  # one reason per group left out


def create_unlabeled_infos(
    dataroot: str,
    version: str,
    out_dir: str,
    prefix: str = "renderlss",
    max_sweeps: int = 10,
    val_fraction: float = 0.25,
    show_progress: bool = True,
) -> dict[str, UnlabeledSplitReport]:
    """Write ``<out_dir>/<prefix>_infos_<split>_unlabeled.pkl`` for every split (the scenes of
    the keyframe info files of ``renderlss.data.info_builder.create_infos``)."""
    if max_sweeps < 0:
        raise ValueError(f"max_sweeps must be >= 0, got {max_sweeps}")
    nusc = open_nuscenes(dataroot, version)
    splits, _ = split_scenes(version, [s["name"] for s in nusc.scene], val_fraction)
    cameras = camera_channels(nusc)
    if not cameras:
        raise ValueError(f"{dataroot} ({version}): the sensor table lists no camera")
    scene_by_name = {s["name"]: s for s in nusc.scene}
    reports = {}
    total = sum(len(names) for names in splits.values())
    with tqdm(total=total, desc="unlabeled", unit="scene", disable=not show_progress) as bar:
        for split, scene_names in splits.items():
            infos, skipped = [], []
            for name in scene_names:
                scene_infos, scene_skipped = build_scene_unlabeled_infos(
                    nusc, scene_by_name[name], cameras, max_sweeps
                )
                infos += scene_infos
                skipped += scene_skipped
                bar.update(1)
            metadata = dict(
                format=INFO_FORMAT,
                format_version=INFO_FORMAT_VERSION,
                version=version,
                dataroot=nusc.dataroot,
                split=split,
                cameras=cameras,
                has_lidarseg=False,
                has_occ=False,
                unlabeled=True,
            )
            path = unlabeled_info_path(out_dir, prefix, split)
            save_infos(path, metadata, infos)
            reports[split] = UnlabeledSplitReport(str(path), len(scene_names), len(infos), skipped)
    return reports


def format_unlabeled_report(reports: dict[str, UnlabeledSplitReport]) -> str:
    """One line per split (and one per group left out), for tools/create_data.py."""
    lines = []
    for split, rep in reports.items():
        lines.append(
            f"  {split:<10} {rep.records:6d} unlabeled camera-frame groups from "
            f"{rep.scenes} scenes, {len(rep.skipped)} left out -> {rep.path}"
        )
        lines += [f"    left out: {reason}" for reason in rep.skipped]
    return "\n".join(lines)
