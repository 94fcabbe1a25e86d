"""Accumulate the LiDAR sweeps around a keyframe into one point cloud.

Static points go to the global frame by the ego pose of their own sweep. Points inside an
annotated (slightly enlarged) box at their sweep's time are kept in that box's frame and are
re-placed at the box pose of whatever instant the cloud is looked at from (a camera's own
timestamp), so moving objects do not leave trails. Returns from the ego vehicle's body are
removed in each sweep's own ego frame.

Optionally (``LidarVisibilityConfig.enabled``) the points of every other sweep are first
tested against the range image of a reference sweep (the keyframe's): placed where they are
at the reference time and moved into its LiDAR frame, points the reference LiDAR saw a
nearer surface in front of are dropped (see ``renderlss.labels.visibility``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderlss.geometry import compose, invert_pose, transform_points
from renderlss.labels.box_motion import (
    Box,
    BoxTrack,
    assign_points_to_boxes,
    box_at,
    boxes_at,
    from_box_frame,
    to_box_frame,
)
from renderlss.labels.range_image import range_image
from renderlss.labels.visibility import LidarVisibilityConfig, hidden_behind_range_image
from renderlss.records.infos import info_pose
from renderlss.targets.lidar import load_lidar_points, outside_box


@dataclass(frozen=True)
class LidarFrame:
    """One LiDAR sweep (keyframe or not): file, time (microseconds) and its two poses."""

    data_path: str
    timestamp: int
    lidar2ego: np.ndarray  # [4, 4] sensor -> ego
    ego2global: np.ndarray  # [4, 4] ego -> global at this sweep's time


def keyframe_lidar_frame(info: dict) -> LidarFrame:
    """The keyframe's own LiDAR sweep."""
    what = f"sample {info['token']}"
    return LidarFrame(
        data_path=info["lidar_path"],
        timestamp=int(info["timestamp"]),
        lidar2ego=info_pose(info, "lidar2ego", what),
        ego2global=info_pose(info, "ego2global", what),
    )


def sweep_lidar_frame(sweep: dict, where: str) -> LidarFrame:
    """A non-keyframe sweep listed in an info's ``sweeps``."""
    return LidarFrame(
        data_path=sweep["data_path"],
        timestamp=int(sweep["timestamp"]),
        lidar2ego=info_pose(sweep, "sensor2ego", where),
        ego2global=info_pose(sweep, "ego2global", where),
    )


def scene_lidar_timeline(scene_infos: list[dict]) -> list[LidarFrame]:
    """Every LiDAR sweep the infos of one scene know of (keyframes and their ``sweeps``), once
    each, in time order. Sweeps after a keyframe are listed by the next keyframe's info, so
    the timeline is what lets a window reach forward in time."""
    frames: dict[str, LidarFrame] = {}
    for info in scene_infos:
        frames[info["lidar_path"]] = keyframe_lidar_frame(info)
        for index, sweep in enumerate(info["sweeps"]):
            where = f"sample {info['token']}, sweep {index}"
            frames.setdefault(sweep["data_path"], sweep_lidar_frame(sweep, where))
    return sorted(frames.values(), key=lambda f: f.timestamp)


def window_frames(timeline: list[LidarFrame], timestamp: int, window: int) -> list[LidarFrame]:
    """The sweep nearest to ``timestamp`` and up to ``window`` sweeps before and after it."""
    times = np.array([f.timestamp for f in timeline], dtype=np.int64)
    centre = int(np.argmin(np.abs(times - timestamp)))
    return timeline[max(0, centre - window) : centre + window + 1]


@dataclass
class AccumulatedCloud:
    """Points of several sweeps, split into static points and points riding on objects.

    Attributes:
        static_points: [S, 3] float64 in the global frame.
        object_points: [O, 3] float64, each in the frame of its instance's box.
        object_instance: [O] int64 index into ``instance_tokens``.
        instance_tokens: instances that own object points.
        ego_points: returns removed as the ego vehicle's body.
        lidar_hidden_points: points of other sweeps removed as hidden from the reference
            sweep's LiDAR (0 without the LiDAR-side test).
    """

    static_points: np.ndarray
    object_points: np.ndarray
    object_instance: np.ndarray
    instance_tokens: list[str]
    ego_points: int
    lidar_hidden_points: int = 0

    def place_at(
        self, tracks: dict[str, BoxTrack], timestamp: int, max_extrapolation_s: float
    ) -> tuple[np.ndarray, int]:
        """All points in the global frame with objects at their pose at ``timestamp``.

        Returns:
            [N, 3] float64 points, and the number of object points dropped because their
            instance has no box at ``timestamp``.
        """
        parts = [self.static_points]
        dropped = 0
        order = np.argsort(self.object_instance, kind="stable")
        bounds = np.searchsorted(
            self.object_instance[order], np.arange(len(self.instance_tokens) + 1)
        )
        for index, token in enumerate(self.instance_tokens):
            mine = order[bounds[index] : bounds[index + 1]]
            box = box_at(tracks[token], timestamp, max_extrapolation_s)
            if box is None:
                dropped += len(mine)
                continue
            parts.append(from_box_frame(self.object_points[mine], box))
        return np.concatenate(parts), dropped


def sweep_points_in_ego(
    frame: LidarFrame, dataroot: Path, ego_box: tuple[float, ...]
) -> tuple[np.ndarray, int]:
    """[P, 3] float64 points of one sweep in its ego frame, without the ego body's returns,
    and the number of returns removed."""
    points = load_lidar_points(dataroot / frame.data_path)[:, :3]
    points_ego = transform_points(frame.lidar2ego, points.astype(np.float64))
    keep = outside_box(points_ego, ego_box)
    return points_ego[keep], int((~keep).sum())


def nearest_frame(frames: list[LidarFrame], timestamp: int) -> LidarFrame:
    """The frame whose time is nearest to ``timestamp`` (the earlier one on a tie)."""
    times = np.array([f.timestamp for f in frames], dtype=np.int64)
    return frames[int(np.argmin(np.abs(times - timestamp)))]


def lidar_from_global(frame: LidarFrame) -> np.ndarray:
    """[4, 4] float64 ``T_lidar_from_global`` at the sweep's time."""
    return invert_pose(compose(frame.ego2global, frame.lidar2ego))


def objects_moved_to(
    points: np.ndarray, owner: np.ndarray, boxes: dict[str, Box], later: dict[str, Box]
) -> np.ndarray:
    """[P, 3] global points of one sweep with each object's points carried from its box at
    the sweep's time (``boxes``, indexed by ``owner`` [P], -1 = static) to its box in
    ``later`` (the same instances at another time); instances absent there stay put."""
    moved = points.copy()
    tokens = list(boxes)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(len(tokens) + 1))
    for box_index in np.flatnonzero(np.diff(bounds)):
        token = tokens[box_index]
        if token in later:
            mine = order[bounds[box_index] : bounds[box_index + 1]]
            moved[mine] = from_box_frame(to_box_frame(points[mine], boxes[token]), later[token])
    return moved


def accumulate_frames(
    frames: list[LidarFrame],
    dataroot: str | Path,
    ego_box: tuple[float, ...],
    tracks: dict[str, BoxTrack] | None,
    box_margin: float,
    max_extrapolation_s: float,
    lidar_visibility: LidarVisibilityConfig | None = None,
    reference_timestamp: int | None = None,
) -> AccumulatedCloud:
    """Load and merge sweeps.

    Args:
        frames: the sweeps to merge.
        dataroot: root the frames' relative paths are resolved against.
        ego_box: ``(x0, y0, z0, x1, y1, z1)`` of the ego body in the ego frame.
        tracks: box tracks of the scene's instances; None treats every point as static.
        box_margin: metres added to the sides and top of a box, and taken off its bottom,
            when collecting its points (see ``points_in_box``).
        max_extrapolation_s: how far outside its annotated span a box still exists.
        lidar_visibility: the LiDAR-side hidden-point test; None or not enabled: off.
        reference_timestamp: with the test on, the sweep nearest this time (the keyframe's)
            is the reference the other sweeps are tested against.
    Raises:
        FileNotFoundError / ValueError: a missing or corrupt sweep file, naming it.
    """
    testing = lidar_visibility is not None and lidar_visibility.enabled
    if testing and reference_timestamp is None:
        raise ValueError("accumulate_frames: the LiDAR-side test needs a reference_timestamp")
    reference = nearest_frame(frames, reference_timestamp) if testing and frames else None
    if reference is not None:
        reference_points = sweep_points_in_ego(reference, Path(dataroot), ego_box)
        # The ego body's returns stay out: the cameras look past the bonnet the LiDAR hits.
        reference_lidar = transform_points(invert_pose(reference.lidar2ego), reference_points[0])
        reference_ranges = range_image(reference_lidar, lidar_visibility.sensor).range
        to_reference = lidar_from_global(reference)
        reference_boxes = (
            boxes_at(tracks, reference.timestamp, max_extrapolation_s) if tracks else {}
        )
    static, objects, owners = [], [], []
    instance_index: dict[str, int] = {}
    ego_points = lidar_hidden = 0
    for frame in frames:
        if frame is reference:
            points_ego, removed = reference_points
        else:
            points_ego, removed = sweep_points_in_ego(frame, Path(dataroot), ego_box)
        ego_points += removed
        points = transform_points(frame.ego2global, points_ego)
        boxes = boxes_at(tracks, frame.timestamp, max_extrapolation_s) if tracks else {}
        owner = (
            assign_points_to_boxes(points, boxes, box_margin)
            if boxes
            else np.full(len(points), -1, dtype=np.int64)
        )
        if reference is not None and frame is not reference:
            at_reference = objects_moved_to(points, owner, boxes, reference_boxes)
            hidden = hidden_behind_range_image(
                transform_points(to_reference, at_reference), reference_ranges, lidar_visibility
            )
            points, owner = points[~hidden], owner[~hidden]
            lidar_hidden += int(hidden.sum())
        static.append(points[owner < 0])
        for box_index, (token, box) in enumerate(boxes.items()):
            mine = owner == box_index
            if mine.any():
                objects.append(to_box_frame(points[mine], box))
                index = instance_index.setdefault(token, len(instance_index))
                owners.append(np.full(int(mine.sum()), index, dtype=np.int64))
    return AccumulatedCloud(
        static_points=np.concatenate(static) if static else np.zeros((0, 3)),
        object_points=np.concatenate(objects) if objects else np.zeros((0, 3)),
        object_instance=np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64),
        instance_tokens=list(instance_index),
        ego_points=ego_points,
        lidar_hidden_points=lidar_hidden,
    )


def global_to_camera(cam_info: dict, where: str) -> np.ndarray:
    """[4, 4] float64 ``T_cam_from_global`` at the camera's own timestamp."""
    return invert_pose(
        compose(info_pose(cam_info, "ego2global", where), info_pose(cam_info, "sensor2ego", where))
    )
