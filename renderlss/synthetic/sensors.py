"""Sensor simulation: a camera image with its exact depth and semantics, and a LiDAR sweep
with its per-point labels, both from the analytic world at the sensor's own timestamp.

Sensors are instantaneous: a camera is a global-shutter pinhole and a LiDAR sweep is
captured at one instant (as if motion-compensated to its timestamp, which is what nuScenes
stores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderlss.data.classes import ClassesConfig, learning_map_table
from renderlss.geometry import compose, invert_pose, pixel_grid, unproject_pixels
from renderlss.synthetic import rig, shading
from renderlss.synthetic.raycast import (
    GROUND,
    NOTHING,
    Hits,
    camera_windows,
    cast,
    lidar_windows,
)
from renderlss.synthetic.world import Boxes, SceneWorld


@dataclass
class CameraFrame:
    """One rendered image: ``image`` [H, W, 3] uint8, ``depth`` [H, W] float32 camera z
    (0: sky), ``semantics`` [H, W] uint8 Occ3D class (``ignore_index``: sky), ``actor`` [H, W]
    index of the visible actor (-1: none), ``coverage`` [A] pixels covered per actor ignoring
    occlusion (a sum over its parts)."""

    image: np.ndarray
    depth: np.ndarray
    semantics: np.ndarray
    actor: np.ndarray
    coverage: np.ndarray


@dataclass
class LidarSweep:
    """``points`` [N, 5] float32 (x, y, z, intensity, ring) in the LIDAR_TOP frame,
    ``labels`` [N] uint8 lidarseg index, ``actor`` [N] owning actor (-1: ground/ego)."""

    points: np.ndarray
    labels: np.ndarray
    actor: np.ndarray


def ego_body(global_from_ego: np.ndarray, ego_index: int) -> Boxes:
    """The ego car body as boxes in the global frame (label ``vehicle.ego``, actor -1)."""
    lo, hi = np.array(rig.EGO_BODY_BOXES, dtype=np.float64).transpose(1, 0, 2)
    local = Boxes(
        centre=0.5 * (lo + hi),
        half=0.5 * (hi - lo),
        yaw=np.zeros(len(lo)),
        label=np.full(len(lo), ego_index, dtype=np.int64),
        actor=np.full(len(lo), -1, dtype=np.int64),
    )
    return local.transformed(global_from_ego)


def _within(boxes: Boxes, origin: np.ndarray, distance: float) -> np.ndarray:
    """[P] bool: some part of the box may be within ``distance`` of ``origin``."""
    reach = np.linalg.norm(boxes.half, axis=-1)
    return np.linalg.norm(boxes.centre - origin, axis=-1) - reach <= distance


def _surface_labels(
    world: SceneWorld, hits: Hits, points: np.ndarray, boxes: Boxes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lidarseg label, paint and owning actor of each hit; points [..., 3] global."""
    label = np.zeros(hits.part.shape, dtype=np.int64)
    actor = np.full(hits.part.shape, -1, dtype=np.int64)
    marking = np.zeros(hits.part.shape, dtype=np.int64)
    ground = hits.part == GROUND
    label[ground] = world.ground_label(points[ground][:, :2])
    marking[ground] = world.ground_marking(points[ground][:, :2])
    on_box = hits.part >= 0
    label[on_box] = boxes.label[hits.part[on_box]]
    actor[on_box] = boxes.actor[hits.part[on_box]]
    return label, marking, actor


def render_camera(
    world: SceneWorld,
    cam: rig.CameraSpec,
    t: float,
    classes: ClassesConfig,
    max_distance: float,
) -> CameraFrame:
    """Render camera ``cam`` at scene time ``t`` (seconds); surfaces farther than
    ``max_distance`` (metres) are shown as sky."""
    category_names = classes.lidarseg_category_names
    global_from_cam = compose(world.ego_pose(t), cam.ego_from_cam)
    origin = global_from_cam[:3, 3]
    rays_cam = unproject_pixels(pixel_grid(cam.height, cam.width), 1.0, cam.intrinsic)
    dirs = rays_cam @ global_from_cam[:3, :3].T  # [H, W, 3], unit camera z: t is depth
    boxes = world.boxes_at(t)
    near = _within(boxes, origin, max_distance)
    boxes = boxes.subset(near)
    windows = camera_windows(
        boxes, invert_pose(global_from_cam), cam.intrinsic, cam.width, cam.height
    )
    hits = cast(origin, dirs, boxes, windows, max_distance)
    seen = hits.part != NOTHING
    points = origin + hits.t[..., None] * dirs
    label, marking, actor = _surface_labels(
        world, hits, np.where(seen[..., None], points, 0), boxes
    )

    colour = shading.sky_colour(dirs.reshape(-1, 3)).reshape(dirs.shape)
    distance = hits.t[seen] * np.linalg.norm(dirs[seen], axis=-1)
    surface = shading.shade_surface(
        points[seen],
        hits.normal[seen],
        label[seen],
        actor[seen],
        marking[seen],
        world.sun,
        category_names,
    )
    colour[seen] = shading.add_haze(surface, distance)
    image = np.round(colour * 255.0).astype(np.uint8)

    depth = np.where(seen, hits.t, 0.0).astype(np.float32)
    occ_class = learning_map_table(classes)[label]
    semantics = np.where(seen, occ_class, classes.ignore_index).astype(np.uint8)
    coverage = np.bincount(boxes.actor, weights=hits.coverage, minlength=len(world.actors))
    return CameraFrame(image, depth, semantics, actor, coverage.astype(np.int64))


def scan_lidar(
    world: SceneWorld,
    t: float,
    azimuth_steps: int,
    category_names: list[str],
    max_distance: float,
) -> LidarSweep:
    """One LiDAR sweep at scene time ``t``: 32 beams x ``azimuth_steps`` rays, returns only."""
    global_from_ego = world.ego_pose(t)
    global_from_lidar = compose(global_from_ego, rig.lidar_extrinsic())
    origin = global_from_lidar[:3, 3]
    dirs_lidar = rig.lidar_directions(azimuth_steps)
    dirs = dirs_lidar @ global_from_lidar[:3, :3].T
    boxes = world.boxes_at(t)
    boxes = boxes.subset(_within(boxes, origin, max_distance))
    ego = ego_body(global_from_ego, category_names.index("vehicle.ego"))
    boxes = boxes.concatenate(ego)
    windows = lidar_windows(
        boxes,
        invert_pose(global_from_lidar),
        np.radians(rig.LIDAR_ELEVATIONS_DEG),
        azimuth_steps,
    )
    hits = cast(origin, dirs, boxes, windows, max_distance)
    seen = hits.part != NOTHING
    points = origin + hits.t[..., None] * dirs
    label, marking, actor = _surface_labels(
        world, hits, np.where(seen[..., None], points, 0), boxes
    )
    intensity = shading.lidar_intensity(
        label[seen], hits.normal[seen], dirs[seen], marking[seen], category_names
    )
    ring = np.broadcast_to(np.arange(dirs.shape[0])[:, None], seen.shape)[seen]
    xyz = hits.t[seen][:, None] * dirs_lidar[seen]
    cloud = np.concatenate([xyz, intensity[:, None], ring[:, None]], axis=1).astype(np.float32)
    return LidarSweep(cloud, label[seen].astype(np.uint8), actor[seen])
