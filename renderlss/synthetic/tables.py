"""The nuScenes tables of a synthetic dataset, planned before anything is rendered.

The plan fixes every token, timestamp, pose and file name from the config alone, so a
resumed run produces identical tables; only ``num_lidar_pts`` and ``visibility_token`` of
the annotations come from rendering (per-keyframe statistics, see ``generate.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from renderlss.geometry import centre_convention_intrinsic, matrix_to_quaternion
from renderlss.synthetic import rig
from renderlss.synthetic.config import SyntheticConfig
from renderlss.synthetic.layout import build_scene
from renderlss.synthetic.world import SceneWorld

# 2018-07-01 00:00 UTC in microseconds; scenes start an hour apart.
FIRST_SCENE_US = 1_530_403_200_000_000
SCENE_SPACING_US = 3_600_000_000
LOCATION = "synthetic-town"
MAP_SIZE = 64  # pixels of the placeholder map image

ATTRIBUTES = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver/rider in/on it, is currently stationary.",
    "vehicle.parked": "Vehicle is stationary (usually for longer duration) with no driver.",
    "cycle.with_rider": "There is someone on the bicycle or motorcycle.",
    "cycle.without_rider": "There is nobody on the bicycle or motorcycle.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
    "pedestrian.standing": "The human is standing.",
    "pedestrian.moving": "The human is moving.",
}
# nuScenes visibility bins: fraction of the object visible in all six images.
VISIBILITY = (
    ("1", "v0-40", 0.4),
    ("2", "v40-60", 0.6),
    ("3", "v60-80", 0.8),
    ("4", "v80-100", 1.0),
)


def make_token(seed: int, *parts: object) -> str:
    """32-hex token, a deterministic function of the dataset seed and the record's key."""
    key = "/".join(str(p) for p in ("renderlss-synthetic", seed, *parts))
    return hashlib.md5(key.encode("utf-8")).hexdigest()


def visibility_token(visible_fraction: float) -> str:
    """nuScenes visibility token ("1".."4") of a visible fraction in [0, 1]."""
    for token, _, upper in VISIBILITY:
        if visible_fraction <= upper:
            return token
    return VISIBILITY[-1][0]


@dataclass
class SensorFrame:
    """One planned sample_data: sensor ``channel`` at scene time ``t`` (seconds)."""

    token: str
    channel: str
    t: float
    timestamp: int
    filename: str
    is_key_frame: bool
    sample_index: int  # keyframe it belongs to (its own, or the next one for sweeps)
    ego_pose_token: str


@dataclass
class ScenePlan:
    """Everything about one scene except what rendering measures."""

    index: int
    name: str
    token: str
    log_token: str
    world: SceneWorld
    start_us: int
    sample_tokens: list[str]
    sample_times: list[float]
    frames: list[SensorFrame]
    calibrated_tokens: dict[str, str]
    cameras: list[rig.CameraSpec]
    annotated: list[list[int]] = field(default_factory=list)  # actor indices per keyframe


def _timestamp(start_us: int, t: float) -> int:
    return start_us + int(round(t * 1e6))


def plan_scene(config: SyntheticConfig, index: int) -> ScenePlan:
    """Tokens, timestamps, file names and the world of scene ``index``."""
    seed = config.seed
    name = f"scene-{index:04d}"
    cameras = rig.camera_rig(config.width, config.height, config.lidar_rate_hz)
    duration = (config.keyframes_per_scene - 1) / config.keyframe_rate_hz
    category_index = {n: i for i, n in enumerate(config.classes.lidarseg_category_names)}
    world = build_scene(name, seed, index, duration, category_index)
    start_us = FIRST_SCENE_US + index * SCENE_SPACING_US
    log_name = f"synthetic-{seed}-{index:04d}"
    sample_tokens = [make_token(seed, name, "sample", n) for n in range(config.keyframes_per_scene)]
    sample_times = [n / config.keyframe_rate_hz for n in range(config.keyframes_per_scene)]
    frames: list[SensorFrame] = []

    def add(channel: str, step: int, per_key: int, rate: float, offset: float) -> None:
        t = step / rate + offset
        timestamp = _timestamp(start_us, t)
        key = step % per_key == 0
        folder = "samples" if key else "sweeps"
        ext = "pcd.bin" if channel == rig.LIDAR_NAME else "jpg"
        token = make_token(seed, name, channel, step)
        frames.append(
            SensorFrame(
                token=token,
                channel=channel,
                t=t,
                timestamp=timestamp,
                filename=f"{folder}/{channel}/{log_name}__{channel}__{timestamp}.{ext}",
                is_key_frame=key,
                sample_index=-(-step // per_key),
                ego_pose_token=make_token(seed, name, "ego_pose", channel, step),
            )
        )

    last = config.keyframes_per_scene - 1
    spk = config.sweeps_per_keyframe
    for step in range(last * spk + 1):
        add(rig.LIDAR_NAME, step, spk, config.lidar_rate_hz, 0.0)
    cpk = config.camera_frames_per_keyframe
    for cam in cameras:
        steps = range(last * cpk + 1) if config.camera_sweeps else range(0, last * cpk + 1, cpk)
        for step in steps:
            add(cam.name, step, cpk, config.camera_rate_hz, cam.time_offset_s)
    plan = ScenePlan(
        index=index,
        name=name,
        token=make_token(seed, name, "scene"),
        log_token=make_token(seed, name, "log"),
        world=world,
        start_us=start_us,
        sample_tokens=sample_tokens,
        sample_times=sample_times,
        frames=frames,
        calibrated_tokens={
            ch: make_token(seed, name, "calibrated_sensor", ch)
            for ch in (rig.LIDAR_NAME, *rig.CAMERA_NAMES)
        },
        cameras=cameras,
    )
    plan.annotated = [annotated_actors(world, t, config.annotation_range) for t in sample_times]
    return plan


def annotated_actors(world: SceneWorld, t: float, max_distance: float) -> list[int]:
    """Indices of actors that get an annotation at time ``t``: annotated kinds whose centre
    is within ``max_distance`` of the ego vehicle."""
    xy, _ = world.actor_poses(t)
    ego_xy = world.ego_pose(t)[:2, 3]
    near = np.linalg.norm(xy - ego_xy, axis=1) <= max_distance
    return [i for i, a in enumerate(world.actors) if a.annotated and near[i]]


def _chain(records: list[dict]) -> None:
    """Fill ``prev`` / ``next`` of records already in order."""
    for i, rec in enumerate(records):
        rec["prev"] = records[i - 1]["token"] if i > 0 else ""
        rec["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""


def _pose_record(token: str, pose: np.ndarray, timestamp: int) -> dict:
    return {
        "token": token,
        "timestamp": timestamp,
        "rotation": matrix_to_quaternion(pose[:3, :3]).tolist(),
        "translation": pose[:3, 3].tolist(),
    }


def build_tables(
    config: SyntheticConfig, plans: list[ScenePlan], stats: dict[str, dict]
) -> dict[str, list[dict]]:
    """All tables (13 nuScenes tables + lidarseg) as lists of records.

    Args:
        stats: per sample token, ``{"num_lidar_pts": {actor: n}, "visible": {actor: f}}``.
    """
    seed = config.seed
    names = config.classes.lidarseg_category_names
    category_token = {n: make_token(seed, "category", n) for n in names}
    attribute_token = {n: make_token(seed, "attribute", n) for n in ATTRIBUTES}
    sensor_token = {
        ch: make_token(seed, "sensor", ch) for ch in (rig.LIDAR_NAME, *rig.CAMERA_NAMES)
    }
    t = _static_tables(config, plans, category_token, attribute_token, sensor_token)
    for key in ("calibrated_sensor", "ego_pose", "log", "scene", "sample", "sample_data"):
        t[key] = []
    t["instance"], t["sample_annotation"], t["lidarseg"] = [], [], []
    for plan in plans:
        _scene_records(seed, plan, t)
        _calibrations(plan, sensor_token, t)
        for channel in (rig.LIDAR_NAME, *rig.CAMERA_NAMES):
            _sensor_chain(config, plan, channel, t)
        _annotations(config, plan, stats, t, category_token, attribute_token)
    return t


def _static_tables(
    config: SyntheticConfig,
    plans: list[ScenePlan],
    category_token: dict[str, str],
    attribute_token: dict[str, str],
    sensor_token: dict[str, str],
) -> dict[str, list[dict]]:
    """The tables that no scene adds to: category, attribute, visibility, sensor, map."""
    names = config.classes.lidarseg_category_names
    return {
        "category": [
            {"token": category_token[n], "name": n, "description": f"Synthetic {n}.", "index": i}
            for i, n in enumerate(names)
        ],
        "attribute": [
            {"token": attribute_token[n], "name": n, "description": d}
            for n, d in ATTRIBUTES.items()
        ],
        "visibility": [
            {"token": tok, "level": level, "description": f"visibility of whole object is {level}"}
            for tok, level, _ in VISIBILITY
        ],
        "sensor": [
            {
                "token": sensor_token[ch],
                "channel": ch,
                "modality": "lidar" if ch == rig.LIDAR_NAME else "camera",
            }
            for ch in (rig.LIDAR_NAME, *rig.CAMERA_NAMES)
        ],
        "map": [
            {
                "token": make_token(config.seed, "map"),
                "log_tokens": [p.log_token for p in plans],
                "category": "semantic_prior",
                "filename": map_filename(config),
            }
        ],
    }


def _scene_records(seed: int, plan: ScenePlan, t: dict[str, list[dict]]) -> None:
    """The log, scene and sample records of one scene, appended to ``t``."""
    t["log"].append(
        {
            "token": plan.log_token,
            "logfile": f"synthetic-{seed}-{plan.index:04d}",
            "vehicle": "synthetic-car",
            "date_captured": "2018-07-01",
            "location": LOCATION,
        }
    )
    t["scene"].append(
        {
            "token": plan.token,
            "log_token": plan.log_token,
            "nbr_samples": len(plan.sample_tokens),
            "first_sample_token": plan.sample_tokens[0],
            "last_sample_token": plan.sample_tokens[-1],
            "name": plan.name,
            "description": f"Synthetic street, seed {seed}, layout {plan.index}.",
        }
    )
    samples = [
        {
            "token": tok,
            "timestamp": _timestamp(plan.start_us, plan.sample_times[n]),
            "scene_token": plan.token,
        }
        for n, tok in enumerate(plan.sample_tokens)
    ]
    _chain(samples)
    t["sample"] += samples


def _calibrations(plan: ScenePlan, sensor_token: dict[str, str], t: dict[str, list[dict]]) -> None:
    """The calibrated_sensor records of one scene (cameras, then the LiDAR)."""
    for cam in plan.cameras:
        t["calibrated_sensor"].append(
            _calibration(
                plan.calibrated_tokens[cam.name],
                sensor_token[cam.name],
                cam.ego_from_cam,
                cam.intrinsic,
            )
        )
    t["calibrated_sensor"].append(
        _calibration(
            plan.calibrated_tokens[rig.LIDAR_NAME],
            sensor_token[rig.LIDAR_NAME],
            rig.lidar_extrinsic(),
            None,
        )
    )


def _sensor_chain(
    config: SyntheticConfig, plan: ScenePlan, channel: str, t: dict[str, list[dict]]
) -> None:
    """The ego poses, sample_data records (chained in time) and, for LiDAR keyframes, the
    lidarseg records of one sensor of one scene."""
    chain = sorted((f for f in plan.frames if f.channel == channel), key=lambda f: f.t)
    is_lidar = channel == rig.LIDAR_NAME
    records = []
    for f in chain:
        t["ego_pose"].append(_pose_record(f.ego_pose_token, plan.world.ego_pose(f.t), f.timestamp))
        records.append(
            {
                "token": f.token,
                "sample_token": plan.sample_tokens[f.sample_index],
                "ego_pose_token": f.ego_pose_token,
                "calibrated_sensor_token": plan.calibrated_tokens[channel],
                "timestamp": f.timestamp,
                "fileformat": "pcd" if is_lidar else "jpg",
                "is_key_frame": f.is_key_frame,
                "height": 0 if is_lidar else config.height,
                "width": 0 if is_lidar else config.width,
                "filename": f.filename,
            }
        )
        if is_lidar and f.is_key_frame:
            t["lidarseg"].append(
                {
                    "token": f.token,
                    "sample_data_token": f.token,
                    "filename": lidarseg_filename(config, f.token),
                }
            )
    _chain(records)
    t["sample_data"] += records


def _calibration(token: str, sensor: str, pose: np.ndarray, intrinsic: np.ndarray | None) -> dict:
    return {
        "token": token,
        "sensor_token": sensor,
        "translation": pose[:3, 3].tolist(),
        "rotation": matrix_to_quaternion(pose[:3, :3]).tolist(),
        # Stored as nuScenes does (pixel centres at integers); the world renders in ours.
        "camera_intrinsic": []
        if intrinsic is None
        else centre_convention_intrinsic(intrinsic).tolist(),
    }


def _annotations(
    config: SyntheticConfig,
    plan: ScenePlan,
    stats: dict[str, dict],
    t: dict[str, list[dict]],
    category_token: dict[str, str],
    attribute_token: dict[str, str],
) -> None:
    seed = config.seed
    world = plan.world
    tracks: dict[int, list[dict]] = {}
    for n, actors in enumerate(plan.annotated):
        sample_token = plan.sample_tokens[n]
        keyframe_stats = stats[sample_token]
        for a in actors:
            centre, size, rotation = world.annotation_box(a, plan.sample_times[n])
            actor = world.actors[a]
            tracks.setdefault(a, []).append(
                {
                    "token": make_token(seed, plan.name, "annotation", a, n),
                    "sample_token": sample_token,
                    "instance_token": make_token(seed, plan.name, "instance", a),
                    "visibility_token": visibility_token(keyframe_stats["visible"][str(a)]),
                    "attribute_tokens": [attribute_token[actor.attribute]]
                    if actor.attribute
                    else [],
                    "translation": centre,
                    "size": list(size),
                    "rotation": rotation,
                    "num_lidar_pts": int(keyframe_stats["num_lidar_pts"][str(a)]),
                    "num_radar_pts": 0,
                }
            )
    for a in sorted(tracks):
        records = tracks[a]
        _chain(records)
        t["sample_annotation"] += records
        t["instance"].append(
            {
                "token": records[0]["instance_token"],
                "category_token": category_token[world.actors[a].category],
                "nbr_annotations": len(records),
                "first_annotation_token": records[0]["token"],
                "last_annotation_token": records[-1]["token"],
            }
        )


def map_filename(config: SyntheticConfig) -> str:
    return f"maps/{make_token(config.seed, 'map')}.png"


def lidarseg_filename(config: SyntheticConfig, sample_data_token: str) -> str:
    return f"lidarseg/{config.version}/{sample_data_token}_lidarseg.bin"
