"""Info files built from a nuScenes-format dataroot through nuscenes-devkit: one pickle per
split listing every keyframe with the paths and poses a model needs (the record layout and
its readers are ``renderlss.records.infos``; format in docs/formats.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from nuscenes.nuscenes import NuScenes
from tqdm import tqdm

from renderlss.data.nuscenes_access import (
    LIDAR_CHANNEL,
    LIDARSEG_TABLE,
    camera_channels,
    camera_intrinsic,
    lidarseg_filenames,
    missing_lidarseg_files,
    open_nuscenes,
    previous_sample_data,
    record_pose,
    rotation_translation,
    scene_sample_tokens,
    table_file,
)
from renderlss.data.splits import split_scenes
from renderlss.geometry import compose, invert_pose
from renderlss.records.infos import (
    BOX_FIELDS,
    INFO_FORMAT,
    INFO_FORMAT_VERSION,
    info_output_path,
    occ_label_path,
    save_infos,
)


class MissingFileError(FileNotFoundError):
    """A file that the tables reference is not on disk."""


def _pose_fields(nusc: NuScenes, table: str, token: str, name: str) -> dict:
    rotation, translation = rotation_translation(nusc, table, token)
    return {f"{name}_rotation": rotation, f"{name}_translation": translation}


def _sensor_record_fields(nusc: NuScenes, sample_data: dict) -> dict:
    """Path, token, time and both poses of one sample_data record."""
    return dict(
        data_path=sample_data["filename"],
        sample_data_token=sample_data["token"],
        timestamp=int(sample_data["timestamp"]),
        **_pose_fields(
            nusc, "calibrated_sensor", sample_data["calibrated_sensor_token"], "sensor2ego"
        ),
        **_pose_fields(nusc, "ego_pose", sample_data["ego_pose_token"], "ego2global"),
    )


def _camera_fields(nusc: NuScenes, sample: dict, channel: str) -> dict:
    if channel not in sample["data"]:
        raise ValueError(f"sample {sample['token']}: no keyframe sample_data for camera {channel}")
    sample_data = nusc.get("sample_data", sample["data"][channel])
    return dict(
        _sensor_record_fields(nusc, sample_data),
        cam_intrinsic=camera_intrinsic(
            nusc,
            sample_data["calibrated_sensor_token"],
            f"sample {sample['token']}, camera {channel}",
        ),
        width=int(sample_data["width"]),
        height=int(sample_data["height"]),
    )


def _box_fields(nusc: NuScenes, sample: dict, key_ego_from_global: np.ndarray) -> dict:
    """Boxes of a keyframe in its ego frame: [M, 7] (x, y, z, l, w, h, yaw), [M, 2] velocity."""
    boxes, velocities, names, instances, num_pts = [], [], [], [], []
    for ann_token in sample["anns"]:
        ann = nusc.get("sample_annotation", ann_token)
        box_in_ego = compose(key_ego_from_global, record_pose(nusc, "sample_annotation", ann_token))
        yaw = np.arctan2(box_in_ego[1, 0], box_in_ego[0, 0])
        width, length, height = ann["size"]  # nuScenes stores [w, l, h]
        boxes.append([*box_in_ego[:3, 3], length, width, height, yaw])
        # The devkit's velocity is global; only its direction turns into the ego frame.
        velocity = key_ego_from_global[:3, :3] @ nusc.box_velocity(ann_token)
        velocities.append(velocity[:2])
        names.append(ann["category_name"])
        instances.append(ann["instance_token"])
        num_pts.append(int(ann["num_lidar_pts"]))
    return dict(
        gt_boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, len(BOX_FIELDS)),
        gt_velocity=np.asarray(velocities, dtype=np.float32).reshape(-1, 2),
        gt_names=names,
        instance_tokens=instances,
        num_lidar_pts=np.asarray(num_pts, dtype=np.int64),
    )


def _check_files_exist(dataroot: str, info: dict) -> None:
    paths = [info["lidar_path"], info["lidarseg_path"]]
    paths += [cam["data_path"] for cam in info["cams"].values()]
    paths += [sweep["data_path"] for sweep in info["sweeps"]]
    for path in filter(None, paths):
        if not os.path.isfile(os.path.join(dataroot, path)):
            raise MissingFileError(
                f"{os.path.join(dataroot, path)}: file missing (sample {info['token']})"
            )


def _check_lidarseg_files(nusc: NuScenes) -> None:
    """Refuse a lidarseg table naming files that are not on disk, listing all of them."""
    missing = missing_lidarseg_files(nusc.dataroot, getattr(nusc, "lidarseg", []))
    if missing:
        listing = "".join(f"\n  {os.path.join(nusc.dataroot, path)}" for path in missing)
        raise MissingFileError(
            f"{table_file(nusc, LIDARSEG_TABLE)}: {len(missing)} of its label files are "
            f"missing:{listing}"
        )


def build_sample_info(
    nusc: NuScenes,
    sample_token: str,
    cameras: list[str],
    max_sweeps: int,
    lidarseg_files: dict[str, str],
) -> dict:
    """The info dict of one keyframe (layout in docs/formats.md).

    Raises:
        ValueError: a malformed pose or intrinsic (naming table, token and field) or a
            missing camera.
        MissingFileError: a referenced file is not on disk (naming it and the sample).
    """
    sample = nusc.get("sample", sample_token)
    scene = nusc.get("scene", sample["scene_token"])
    if LIDAR_CHANNEL not in sample["data"]:
        raise ValueError(f"sample {sample_token}: no keyframe sample_data for {LIDAR_CHANNEL}")
    lidar = nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
    key_ego_from_global = invert_pose(record_pose(nusc, "ego_pose", lidar["ego_pose_token"]))
    occ_path = occ_label_path(scene["name"], sample_token)
    info = dict(
        token=sample_token,
        scene_token=scene["token"],
        scene_name=scene["name"],
        timestamp=int(lidar["timestamp"]),
        prev=sample["prev"],
        next=sample["next"],
        lidar_token=lidar["token"],
        lidar_path=lidar["filename"],
        lidarseg_path=lidarseg_files.get(lidar["token"], ""),
        **_pose_fields(nusc, "calibrated_sensor", lidar["calibrated_sensor_token"], "lidar2ego"),
        **_pose_fields(nusc, "ego_pose", lidar["ego_pose_token"], "ego2global"),
        sweeps=[
            _sensor_record_fields(nusc, sd)
            for sd in previous_sample_data(nusc, lidar["token"], max_sweeps)
        ],
        cams={channel: _camera_fields(nusc, sample, channel) for channel in cameras},
        **_box_fields(nusc, sample, key_ego_from_global),
        occ_path=occ_path if os.path.isfile(os.path.join(nusc.dataroot, occ_path)) else "",
    )
    _check_files_exist(nusc.dataroot, info)
    return info


@dataclass
class SplitReport:
    """What went into one info file."""

    path: str
    scenes: int
    samples: int
    with_occ: int
    with_lidarseg: int
    skipped: list[str] = field(default_factory=list)  # one reason per skipped sample


@dataclass
class CreateReport:
    """Summary of :func:`create_infos`."""

    version: str
    dataroot: str
    has_lidarseg: bool
    splits: dict[str, SplitReport]
    unassigned_scenes: list[str]

    def format(self) -> str:
        lines = [f"{self.version} at {self.dataroot} (lidarseg: {self.has_lidarseg})"]
        for name, rep in self.splits.items():
            lines.append(
                f"  {name:<10} {rep.samples:6d} samples from {rep.scenes} scenes, "
                f"{rep.with_occ} with Occ3D labels, {rep.with_lidarseg} with lidarseg, "
                f"{len(rep.skipped)} skipped -> {rep.path}"
            )
            lines += [f"    skipped: {reason}" for reason in rep.skipped]
        if self.unassigned_scenes:
            lines.append(
                f"  {len(self.unassigned_scenes)} scenes in no official split: "
                f"{', '.join(self.unassigned_scenes)}"
            )
        if not any(rep.with_occ for rep in self.splits.values()):
            lines.append("  no Occ3D labels found (gts/<scene>/<sample>/labels.npz)")
        return "\n".join(lines)


def build_split_infos(
    nusc: NuScenes,
    scene_names: list[str],
    cameras: list[str],
    max_sweeps: int,
    skip_missing: bool,
    progress: tqdm | None = None,
) -> tuple[list[dict], list[str]]:
    """Infos of all keyframes of the given scenes, ordered by scene then time.

    Returns:
        infos, and one reason per sample skipped for a missing file (only with ``skip_missing``).
    """
    scenes = {s["name"]: s for s in nusc.scene}
    lidarseg_files = lidarseg_filenames(nusc)
    infos, skipped = [], []
    for name in scene_names:
        for token in scene_sample_tokens(nusc, scenes[name]):
            try:
                infos.append(build_sample_info(nusc, token, cameras, max_sweeps, lidarseg_files))
            except MissingFileError as err:
                if not skip_missing:
                    raise
                skipped.append(str(err))
            if progress is not None:
                progress.update(1)
    return infos, skipped


def create_infos(
    dataroot: str,
    version: str,
    out_dir: str,
    prefix: str = "renderlss",
    max_sweeps: int = 10,
    val_fraction: float = 0.25,
    skip_missing: bool = False,
    show_progress: bool = True,
) -> CreateReport:
    """Write ``<out_dir>/<prefix>_infos_<split>.pkl`` for every split of a dataroot.

    Raises:
        MissingFileError: a referenced file is not on disk (all missing lidarseg files are
            listed at once); with ``skip_missing`` such samples are left out and counted.
        FileNotFoundError, ValueError: see :func:`open_nuscenes` and :func:`build_sample_info`.
    """
    if max_sweeps < 0:
        raise ValueError(f"max_sweeps must be >= 0, got {max_sweeps}")
    nusc = open_nuscenes(dataroot, version)
    if not skip_missing:
        _check_lidarseg_files(nusc)
    splits, unassigned = split_scenes(version, [s["name"] for s in nusc.scene], val_fraction)
    cameras = camera_channels(nusc)
    has_lidarseg = bool(lidarseg_filenames(nusc))
    scene_by_name = {s["name"]: s for s in nusc.scene}
    total = sum(scene_by_name[n]["nbr_samples"] for names in splits.values() for n in names)
    reports = {}
    with tqdm(total=total, desc="infos", unit="sample", disable=not show_progress) as progress:
        for split, scene_names in splits.items():
            infos, skipped = build_split_infos(
                nusc, scene_names, cameras, max_sweeps, skip_missing, progress
            )
            metadata = dict(
                format=INFO_FORMAT,
                format_version=INFO_FORMAT_VERSION,
                version=version,
                dataroot=nusc.dataroot,
                split=split,
                cameras=cameras,
                has_lidarseg=has_lidarseg,
                has_occ=any(info["occ_path"] for info in infos),
            )
            path = info_output_path(out_dir, prefix, split)
            save_infos(path, metadata, infos)
            reports[split] = SplitReport(
                path=str(path),
                scenes=len(scene_names),
                samples=len(infos),
                with_occ=sum(bool(info["occ_path"]) for info in infos),
                with_lidarseg=sum(bool(info["lidarseg_path"]) for info in infos),
                skipped=skipped,
            )
    return CreateReport(version, nusc.dataroot, has_lidarseg, reports, unassigned)
