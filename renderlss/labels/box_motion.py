"""Annotated objects over time: box tracks per instance, interpolated between keyframes, and
the rigid re-placement of object points from one instant to another.

Boxes exist only at keyframes. Between two annotations of an instance its centre moves
linearly and its yaw turns by the shorter angle; a little outside its annotated span it moves
on with its annotated velocity (so that sweeps just before its first or after its last
keyframe still find it), and further away it does not exist. Boxes are upright (yaw only),
as nuScenes annotates them, and live in the global frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from renderlss.geometry import invert_pose, transform_points
from renderlss.records.infos import info_pose

MICROSECONDS = 1e-6


@dataclass
class BoxTrack:
    """The annotations of one instance, in time order.

    Attributes:
        times: [K] int64 timestamps (microseconds) of the annotating keyframes.
        centres: [K, 3] float64 global box centres.
        yaws: [K] float64 global headings (radians about +z).
        sizes: [K, 3] float64 (length, width, height).
        velocities: [K, 3] float64 global velocities (m/s, NaN where unknown).
    """

    times: np.ndarray
    centres: np.ndarray
    yaws: np.ndarray
    sizes: np.ndarray
    velocities: np.ndarray


@dataclass
class Box:
    """One upright box at one instant: ``pose`` [4, 4] float64 ``T_global_from_box`` and
    ``size`` [3] (length, width, height)."""

    pose: np.ndarray
    size: np.ndarray


def box_pose(centre: np.ndarray, yaw: float) -> np.ndarray:
    """[4, 4] float64 ``T_global_from_box`` of an upright box (x along its length)."""
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = centre
    return pose


def interpolate_angle(a: float, b: float, fraction: float) -> float:
    """The angle ``fraction`` of the way from ``a`` to ``b`` along the shorter arc."""
    delta = (b - a + np.pi) % (2 * np.pi) - np.pi
    return float(a + fraction * delta)


def box_at(track: BoxTrack, time: int, max_extrapolation_s: float) -> Box | None:
    """The box of an instance at ``time`` (microseconds), or None where it does not exist.

    Inside the annotated span: linear centre and size, shortest-angle yaw between the two
    bracketing annotations. Up to ``max_extrapolation_s`` outside it: the end annotation moved
    by its velocity (unknown velocity counts as standing still). Beyond: None.
    """
    times = track.times
    if times[0] <= time <= times[-1]:
        k = int(np.searchsorted(times, time, side="right")) - 1
        if k == len(times) - 1:
            return Box(box_pose(track.centres[k], track.yaws[k]), track.sizes[k])
        fraction = (time - times[k]) / (times[k + 1] - times[k])
        centre = (1 - fraction) * track.centres[k] + fraction * track.centres[k + 1]
        yaw = interpolate_angle(track.yaws[k], track.yaws[k + 1], fraction)
        size = (1 - fraction) * track.sizes[k] + fraction * track.sizes[k + 1]
        return Box(box_pose(centre, yaw), size)
    end = 0 if time < times[0] else len(times) - 1
    dt = (time - times[end]) * MICROSECONDS
    if abs(dt) > max_extrapolation_s:
        return None
    velocity = np.nan_to_num(track.velocities[end], nan=0.0)
    return Box(box_pose(track.centres[end] + velocity * dt, track.yaws[end]), track.sizes[end])


def scene_box_tracks(keyframe_infos: list[dict]) -> dict[str, BoxTrack]:
    """Box tracks of every instance annotated in the keyframes of one scene.

    Args:
        keyframe_infos: info dicts (docs/formats.md) with ``gt_boxes`` in their keyframe ego
            frame, ``gt_velocity`` and ``instance_tokens``.
    Raises:
        ValueError: naming the sample and field when boxes and instance tokens disagree.
    """
    rows: dict[str, list[tuple]] = {}
    for info in sorted(keyframe_infos, key=lambda i: i["timestamp"]):
        what = f"sample {info['token']}"
        boxes = np.asarray(info["gt_boxes"], dtype=np.float64).reshape(-1, 7)
        velocities = np.asarray(info["gt_velocity"], dtype=np.float64).reshape(-1, 2)
        tokens = info["instance_tokens"]
        if not len(boxes) == len(velocities) == len(tokens):
            raise ValueError(
                f"{what}: gt_boxes ({len(boxes)}), gt_velocity ({len(velocities)}) and "
                f"instance_tokens ({len(tokens)}) differ in length"
            )
        ego2global = info_pose(info, "ego2global", what)
        for box, velocity, token in zip(boxes, velocities, tokens):
            global_pose = ego2global @ box_pose(box[:3], box[6])
            yaw = np.arctan2(global_pose[1, 0], global_pose[0, 0])
            global_velocity = ego2global[:3, :3] @ np.array([velocity[0], velocity[1], 0.0])
            rows.setdefault(token, []).append(
                (info["timestamp"], global_pose[:3, 3], yaw, box[3:6], global_velocity)
            )
    return {
        token: BoxTrack(
            times=np.array([r[0] for r in entries], dtype=np.int64),
            centres=np.array([r[1] for r in entries]),
            yaws=np.array([r[2] for r in entries]),
            sizes=np.array([r[3] for r in entries]),
            velocities=np.array([r[4] for r in entries]),
        )
        for token, entries in rows.items()
    }


def boxes_at(tracks: dict[str, BoxTrack], time: int, max_extrapolation_s: float) -> dict[str, Box]:
    """The boxes of all instances that exist at ``time``."""
    found = {}
    for token, track in tracks.items():
        box = box_at(track, time, max_extrapolation_s)
        if box is not None:
            found[token] = box
    return found


def to_box_frame(points: np.ndarray, box: Box) -> np.ndarray:
    """[P, 3] float64 global points expressed in the box's own frame."""
    return transform_points(invert_pose(box.pose), np.asarray(points, dtype=np.float64))


def from_box_frame(points_box: np.ndarray, box: Box) -> np.ndarray:
    """[P, 3] float64 box-frame points placed at ``box`` in the global frame."""
    return transform_points(box.pose, np.asarray(points_box, dtype=np.float64))


def points_in_box(points: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """[P] bool: which [P, 3] global points lie inside ``box`` grown by ``margin`` metres on
    its sides and top (LiDAR returns sit on the surface and annotations are a little tight).
    Its bottom is raised by ``margin`` instead: a box stands on the ground, and ground
    returns beside it must stay in place, not ride along with the object."""
    local = to_box_frame(points, box)
    half = np.asarray(box.size, dtype=np.float64) / 2
    inside_sides = np.all(np.abs(local[:, :2]) <= half[:2] + margin, axis=1)
    inside_height = (local[:, 2] > -half[2] + margin) & (local[:, 2] <= half[2] + margin)
    return inside_sides & inside_height


def assign_points_to_boxes(points: np.ndarray, boxes: dict[str, Box], margin: float) -> np.ndarray:
    """[P] int64 index into ``list(boxes)`` of the box holding each of the [P, 3] points, -1
    for none (a point in two enlarged boxes goes to the first)."""
    owner = np.full(len(points), -1, dtype=np.int64)
    if not boxes or not len(points):
        return owner
    # Only points within a box's bounding circle (seen from above) need the exact test.
    centres = np.array([box.pose[:2, 3] for box in boxes.values()])
    reach = [float(np.linalg.norm(np.asarray(b.size[:2]) / 2 + margin)) for b in boxes.values()]
    candidates = cKDTree(points[:, :2]).query_ball_point(centres, reach)
    for index, (box, near) in enumerate(zip(boxes.values(), candidates)):
        near = np.asarray(near, dtype=np.int64)
        near = near[owner[near] < 0]
        owner[near[points_in_box(points[near], box, margin)]] = index
    return owner
