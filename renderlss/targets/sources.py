"""Target sources: where the per-pixel depth and class supervision of a camera image comes from.

A source maps one keyframe info (see ``docs/formats.md``) to :class:`PixelTargets` per camera,
in original image coordinates. The default source projects the keyframe LiDAR sweep with its
lidarseg labels; dense multi-frame depth, SAM-derived labels and the synthetic oracle are
sources of the same shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from renderlss.geometry import transform_points
from renderlss.records.infos import info_pose
from renderlss.targets.lidar import (
    HiddenPointTest,
    lidar_to_camera,
    load_lidar_points,
    load_lidarseg_labels,
    outside_box,
    project_lidar_targets,
)
from renderlss.targets.pixel_targets import PixelTargets


class TargetSource(Protocol):
    """Produces sparse or dense pixel targets for the cameras of one keyframe."""

    def __call__(self, info: dict, cameras: list[str]) -> dict[str, PixelTargets]: ...


class LidarTargetSource:
    """Depth and class targets from the keyframe LiDAR sweep projected into each camera.

    Args:
        dataroot: root that relative info paths are resolved against.
        learning_table: [256] uint8 lidarseg index -> Occ3D class (``learning_map_table``).
        ignore_index: class value for points without a label (no lidarseg in the dataroot).
        ego_box: ``(x0, y0, z0, x1, y1, z1)`` of the ego vehicle's body in the ego frame;
            returns inside it are dropped (nuScenes keeps them in the point files).
        min_depth: points nearer to the camera than this (camera z, metres) are dropped.
        hidden: drops the points each camera cannot see (``HiddenPointTest``); None keeps
            every projected point.
    """

    def __init__(
        self,
        dataroot: str | Path,
        learning_table: np.ndarray,
        ignore_index: int,
        ego_box: tuple[float, ...],
        min_depth: float,
        hidden: HiddenPointTest | None = None,
    ) -> None:
        self.dataroot = Path(dataroot)
        self.learning_table = learning_table
        self.ignore_index = ignore_index
        self.ego_box = ego_box
        self.min_depth = min_depth
        self.hidden = hidden

    def __call__(self, info: dict, cameras: list[str]) -> dict[str, PixelTargets]:
        what = f"sample {info['token']}"
        points = load_lidar_points(self.dataroot / info["lidar_path"])[:, :3]
        if info.get("lidarseg_path"):
            raw = load_lidarseg_labels(self.dataroot / info["lidarseg_path"], len(points))
            semantics = self.learning_table[raw]
        else:
            semantics = np.full(len(points), self.ignore_index, dtype=np.uint8)
        lidar2ego = info_pose(info, "lidar2ego", what)
        keep = outside_box(transform_points(lidar2ego, points), self.ego_box)
        points, semantics = points[keep], semantics[keep]
        ego2global_lidar = info_pose(info, "ego2global", what)
        targets = {}
        for cam in cameras:
            cam_info = info["cams"][cam]
            cam_what = f"{what} {cam}"
            to_cam = lidar_to_camera(
                lidar2ego,
                ego2global_lidar,
                info_pose(cam_info, "ego2global", cam_what),
                info_pose(cam_info, "sensor2ego", cam_what),
            )
            targets[cam] = project_lidar_targets(
                transform_points(to_cam, points),
                semantics,
                np.asarray(cam_info["cam_intrinsic"], dtype=np.float64),
                int(cam_info["width"]),
                int(cam_info["height"]),
                self.min_depth,
                self.hidden,
            )
        return targets
