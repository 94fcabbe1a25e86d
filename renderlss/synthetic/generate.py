"""Write a synthetic world as a nuScenes-format dataroot with Occ3D labels and an oracle.

Work is done per keyframe: the keyframe's LiDAR sweep and images, the sweeps and camera
frames since the previous keyframe, its Occ3D labels and oracle files, and a small
statistics file (``synthetic_meta/keyframes/<sample token>.json``: LiDAR points and
visible fraction per annotated object) written last. A keyframe whose statistics file and
outputs all exist is skipped, so an interrupted run resumes where it stopped; the tables are
written at the end from the plan and the statistics, identical for identical configs.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from renderlss.configuration import to_dict
from renderlss.geometry import (
    compose,
    invert_pose,
    pixel_grid,
    transform_points,
    unproject_pixels,
)
from renderlss.io import (
    atomic_save_json,
    atomic_save_npz,
    atomic_write_bytes,
    remove_stale_temp_files,
)
from renderlss.synthetic import occupancy, rig, sensors
from renderlss.synthetic.config import SyntheticConfig
from renderlss.synthetic.tables import (
    MAP_SIZE,
    ScenePlan,
    SensorFrame,
    build_tables,
    lidarseg_filename,
    map_filename,
    plan_scene,
)

META_DIR = "synthetic_meta"


def oracle_filename(frame: SensorFrame) -> str:
    """``oracle/<CAM>/<image file stem>.npz`` of a keyframe image."""
    stem = Path(frame.filename).name[: -len(".jpg")]
    return f"oracle/{frame.channel}/{stem}.npz"


def occ_filename(plan: ScenePlan, sample_index: int) -> str:
    return f"gts/{plan.name}/{plan.sample_tokens[sample_index]}/labels.npz"


def stats_filename(plan: ScenePlan, sample_index: int) -> str:
    return f"{META_DIR}/keyframes/{plan.sample_tokens[sample_index]}.json"


@dataclass
class Counters:
    written: int = 0
    skipped: int = 0
    keyframes_done: int = 0
    keyframes_skipped: int = 0


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class _Writer:
    """Writes a file only when it does not exist yet, counting what it did."""

    def __init__(self, root: Path, counters: Counters):
        self.root = root
        self.counters = counters

    def missing(self, rel: str) -> bool:
        return not (self.root / rel).is_file()

    def write_bytes(self, rel: str, make: Callable[[], bytes]) -> None:
        if self.missing(rel):
            atomic_write_bytes(self.root / rel, make())
            self.counters.written += 1
        else:
            self.counters.skipped += 1

    def write_npz(self, rel: str, make: Callable[[], dict[str, np.ndarray]]) -> None:
        if self.missing(rel):
            atomic_save_npz(self.root / rel, **make())
            self.counters.written += 1
        else:
            self.counters.skipped += 1


def keyframe_outputs(config: SyntheticConfig, plan: ScenePlan, n: int) -> list[str]:
    """Relative paths of every file keyframe ``n`` of ``plan`` produces."""
    out = []
    for f in plan.frames:
        if f.sample_index != n:
            continue
        out.append(f.filename)
        if f.is_key_frame and f.channel == rig.LIDAR_NAME:
            out.append(lidarseg_filename(config, f.token))
        elif f.is_key_frame:
            out.append(oracle_filename(f))
    out += [occ_filename(plan, n), stats_filename(plan, n)]
    return out


def _camera_mask_rays(
    plan: ScenePlan,
    frame: SensorFrame,
    cam: rig.CameraSpec,
    key_from_global: np.ndarray,
    stride: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Origins and directions [N, 3] of the camera-mask rays in the keyframe ego frame."""
    key_from_cam = compose(key_from_global, plan.world.ego_pose(frame.t), cam.ego_from_cam)
    uv = pixel_grid(cam.height, cam.width)[::stride, ::stride].reshape(-1, 2)
    dirs = unproject_pixels(uv, 1.0, cam.intrinsic) @ key_from_cam[:3, :3].T
    return np.broadcast_to(key_from_cam[:3, 3], dirs.shape), dirs


def occupancy_labels(
    config: SyntheticConfig,
    plan: ScenePlan,
    t: float,
    sweep: sensors.LidarSweep,
    camera_rays: list[tuple[np.ndarray, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Occ3D ``semantics``, ``mask_lidar`` and ``mask_camera`` [X, Y, Z] uint8 of the keyframe
    at scene time ``t`` (its LiDAR time), in that keyframe's ego frame.

    Args:
        sweep: the keyframe's LiDAR sweep; its ego-body returns are left out of the mask.
        camera_rays: per keyframe camera, origins and directions [N, 3] in the keyframe ego
            frame (``_camera_mask_rays``).
    """
    classes = config.classes
    semantics = occupancy.voxel_semantics(
        plan.world, t, plan.world.ego_pose(t), config.grid, classes, config.occ_subsamples
    )
    keep = sweep.labels != classes.lidarseg_category_names.index("vehicle.ego")
    ego_from_lidar = rig.lidar_extrinsic()
    points = transform_points(ego_from_lidar, sweep.points[keep, :3].astype(np.float64))
    sensor = np.broadcast_to(ego_from_lidar[:3, 3], points.shape)
    mask_lidar = occupancy.traverse_voxels(
        sensor, points - sensor, np.ones(len(points)), config.grid
    )
    origins = np.concatenate([o for o, _ in camera_rays])
    dirs = np.concatenate([d for _, d in camera_rays])
    mask_camera = occupancy.traverse_voxels(
        origins,
        dirs,
        np.full(len(dirs), np.inf),
        config.grid,
        stop=semantics != classes.free_index,
    )
    return {
        "semantics": semantics,
        "mask_lidar": mask_lidar.astype(np.uint8),
        "mask_camera": mask_camera.astype(np.uint8),
    }


def generate_keyframe(config: SyntheticConfig, plan: ScenePlan, n: int, writer: _Writer) -> dict:
    """Render and write keyframe ``n`` of a scene (only missing files); return its statistics.

    Non-keyframe sweeps and images are rendered only when their file is missing; the
    keyframe's LiDAR sweep and images are always rendered, as the statistics and labels
    need them.
    """
    world = plan.world
    names = config.classes.lidarseg_category_names
    cams = {c.name: c for c in plan.cameras}
    frames = [f for f in plan.frames if f.sample_index == n]
    key_lidar = next(f for f in frames if f.channel == rig.LIDAR_NAME and f.is_key_frame)
    key_from_global = invert_pose(world.ego_pose(key_lidar.t))
    num_actors = len(world.actors)
    coverage = np.zeros(num_actors)
    visible = np.zeros(num_actors)
    lidar_hits = np.zeros(num_actors, dtype=np.int64)
    camera_rays = []
    sweep = None
    for f in frames:
        if not f.is_key_frame and not writer.missing(f.filename):
            writer.counters.skipped += 1
            continue
        if f.channel == rig.LIDAR_NAME:
            scan = sensors.scan_lidar(
                world, f.t, config.azimuth_steps, names, config.lidar_max_range
            )
            writer.write_bytes(f.filename, scan.points.tobytes)
            if f.is_key_frame:
                sweep = scan
                writer.write_bytes(lidarseg_filename(config, f.token), scan.labels.tobytes)
                lidar_hits += np.bincount(scan.actor[scan.actor >= 0], minlength=num_actors)
            continue
        cam = cams[f.channel]
        frame = sensors.render_camera(world, cam, f.t, config.classes, config.camera_max_range)
        writer.write_bytes(f.filename, lambda fr=frame: _jpeg_bytes(fr.image, config.jpeg_quality))
        if f.is_key_frame:
            writer.write_npz(
                oracle_filename(f), lambda fr=frame: {"depth": fr.depth, "semantics": fr.semantics}
            )
            coverage += frame.coverage
            visible += np.bincount(frame.actor[frame.actor >= 0], minlength=num_actors)
            camera_rays.append(
                _camera_mask_rays(plan, f, cam, key_from_global, config.camera_mask_stride)
            )
    writer.write_npz(
        occ_filename(plan, n),
        lambda: occupancy_labels(config, plan, key_lidar.t, sweep, camera_rays),
    )
    fraction = np.minimum(visible / np.maximum(coverage, 1), 1.0)
    return {
        "num_lidar_pts": {str(a): int(lidar_hits[a]) for a in plan.annotated[n]},
        "visible": {str(a): round(float(fraction[a]), 4) for a in plan.annotated[n]},
    }


def _check_config(root: Path, config: SyntheticConfig) -> None:
    """Refuse to resume into a folder generated with another config."""
    path = root / META_DIR / "config.json"
    wanted = json.loads(json.dumps(to_dict(config)))
    if path.is_file():
        found = json.loads(path.read_text())
        if found != wanted:
            diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise ValueError(
                f"{path}: {root} was generated with a different config (fields {diff}); "
                "rerun with the same arguments to resume, or use a new output folder"
            )
    else:
        atomic_save_json(path, wanted)


def _write_map(root: Path, config: SyntheticConfig, counters: Counters) -> None:
    def image() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.full((MAP_SIZE, MAP_SIZE), 255, dtype=np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    _Writer(root, counters).write_bytes(map_filename(config), image)


def generate_dataset(out_dir: str | Path, config: SyntheticConfig, progress: bool = True) -> dict:
    """Generate (or resume) the dataset in ``out_dir``; returns a summary dict."""
    config.validate()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _check_config(root, config)
    # Temporary files of killed writers (an interrupted run); a live writer's are kept.
    stale = remove_stale_temp_files(root)
    start = time.perf_counter()
    counters = Counters()
    writer = _Writer(root, counters)
    plans = [plan_scene(config, i) for i in range(config.num_scenes)]
    stats: dict[str, dict] = {}
    units = [(p, n) for p in plans for n in range(config.keyframes_per_scene)]
    for plan, n in tqdm(units, desc="keyframes", unit="kf", disable=not progress):
        stats_path = root / stats_filename(plan, n)
        if all((root / rel).is_file() for rel in keyframe_outputs(config, plan, n)):
            stats[plan.sample_tokens[n]] = json.loads(stats_path.read_text())
            counters.keyframes_skipped += 1
            continue
        keyframe_stats = generate_keyframe(config, plan, n, writer)
        atomic_save_json(stats_path, keyframe_stats)
        stats[plan.sample_tokens[n]] = keyframe_stats
        counters.keyframes_done += 1
    _write_map(root, config, counters)
    tables = build_tables(config, plans, stats)
    for name, records in tables.items():
        atomic_save_json(root / config.version / f"{name}.json", records, indent=None)
    seconds = time.perf_counter() - start
    return {
        "out_dir": str(root),
        "version": config.version,
        "scenes": len(plans),
        "samples": len(tables["sample"]),
        "sample_data": len(tables["sample_data"]),
        "annotations": len(tables["sample_annotation"]),
        "instances": len(tables["instance"]),
        "keyframes_generated": counters.keyframes_done,
        "keyframes_skipped": counters.keyframes_skipped,
        "files_written": counters.written,
        "files_skipped": counters.skipped,
        "stale_temporary_files_removed": len(stale),
        "seconds": round(seconds, 2),
        "seconds_per_generated_keyframe": round(seconds / max(counters.keyframes_done, 1), 3),
    }


def time_keyframe(config: SyntheticConfig, scene_index: int = 0) -> dict:
    """Wall-clock seconds to generate one keyframe with everything it owns (the sweeps and
    camera frames since the previous keyframe, labels, oracle), written to a temporary
    folder. Used by ``tools/benchmark.py``."""
    config.validate()
    if not 0 <= scene_index < config.num_scenes:
        raise ValueError(f"scene_index {scene_index} outside 0..{config.num_scenes - 1}")
    start = time.perf_counter()
    plan = plan_scene(config, scene_index)
    planned = time.perf_counter()
    keyframe = min(1, config.keyframes_per_scene - 1)
    with tempfile.TemporaryDirectory() as tmp:
        generate_keyframe(config, plan, keyframe, _Writer(Path(tmp), Counters()))
    done = time.perf_counter()
    return {
        "width": config.width,
        "height": config.height,
        "azimuth_steps": config.azimuth_steps,
        "lidar_rate_hz": config.lidar_rate_hz,
        "camera_sweeps": config.camera_sweeps,
        "plan_seconds": round(planned - start, 3),
        "keyframe_seconds": round(done - planned, 3),
    }
