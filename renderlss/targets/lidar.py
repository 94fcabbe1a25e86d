"""Project LiDAR points into a camera image as sparse depth and semantic targets.

The chain is lidar -> ego(t_lidar) -> global -> ego(t_cam) -> camera: the car moves between
the LiDAR's and the camera's timestamps, so each uses its own ego pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderlss.geometry import compose, invert_pose, nearest_per_pixel, project_to_image
from renderlss.geometry.occlusion import hidden_points
from renderlss.targets.pixel_targets import PixelTargets

POINT_DIMS = 5  # x, y, z, intensity, ring: the nuScenes .pcd.bin layout
# Ego-vehicle body in the ego frame (x0, y0, z0, x1, y1, z1): LiDAR returns inside it are
# dropped. It covers a nuScenes-sized car with the rear axle at the origin.
DEFAULT_EGO_BOX = (-1.2, -1.1, -0.5, 3.6, 1.1, 2.2)
DEFAULT_MIN_DEPTH = 0.5  # camera-z metres; nearer points are dropped
# Image width at which the hidden-point radius is stated: one sweep's points lie further
# apart in pixels in a wider image, so the window grows with the width.
HIDDEN_RADIUS_REFERENCE_WIDTH = 400


@dataclass(frozen=True)
class HiddenPointTest:
    """Drops projected points that the camera cannot see.

    The LiDAR sits higher than the cameras and elsewhere on the car, so it sees the ground and
    walls behind a near car that the camera's view of the car hides. One z-buffer pixel per
    point does not remove them (the car's own points are a few pixels apart), so such a point
    lands on the car's pixels with the depth of what lies behind it. The quadrant test of
    ``renderlss.geometry.occlusion.hidden_points`` drops a point with a point nearer than
    ``depth * (1 - margin)`` in at least ``min_sectors`` of the four quadrants of the window
    around it; a point beside a silhouette has nearer points on one side only and stays.
    """

    radius: int  # window half size at an image HIDDEN_RADIUS_REFERENCE_WIDTH pixels wide
    margin: float = 0.1
    min_sectors: int = 4

    def radius_for(self, width: int) -> int:
        """The window half size in pixels of an image ``width`` pixels wide (at least 1)."""
        return max(1, round(self.radius * width / HIDDEN_RADIUS_REFERENCE_WIDTH))

    def hidden(self, uv: np.ndarray, depth: np.ndarray, width: int, height: int) -> np.ndarray:
        """[M] bool for points at pixel coordinates ``uv`` [M, 2] (one point per pixel, inside
        the image) of camera z ``depth`` [M]."""
        rows, cols = np.floor(uv[:, 1]).astype(np.int64), np.floor(uv[:, 0]).astype(np.int64)
        image = np.zeros((height, width), dtype=np.float32)
        image[rows, cols] = depth
        mask = hidden_points(image, self.radius_for(width), self.margin, self.min_sectors)
        return mask[rows, cols]


def load_lidar_points(path: str | Path) -> np.ndarray:
    """[P, 5] float32 points of a nuScenes ``.pcd.bin`` file (x, y, z, intensity, ring).

    Raises:
        FileNotFoundError: no such file. ValueError: an empty file, one that is no whole
            number of points (truncated) or one with NaN / Inf values, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LiDAR file not found: {path}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size == 0:
        raise ValueError(f"{path}: LiDAR file is empty (0 points)")
    if raw.size % POINT_DIMS:
        raise ValueError(
            f"{path}: {raw.size} floats is not a whole number of {POINT_DIMS}-float points "
            "(truncated or not a nuScenes .pcd.bin)"
        )
    points = raw.reshape(-1, POINT_DIMS)
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{path}: LiDAR points contain NaN or Inf")
    return points


def load_lidarseg_labels(path: str | Path, num_points: int) -> np.ndarray:
    """[P] uint8 lidarseg category indices, checked against the point count of the LiDAR
    file they label (read first, so a broken point file is named as such)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lidarseg file not found: {path}")
    labels = np.fromfile(path, dtype=np.uint8)
    if labels.size != num_points:
        raise ValueError(f"{path}: {labels.size} labels for {num_points} points")
    return labels


def lidar_to_camera(
    lidar2ego: np.ndarray,
    ego2global_lidar: np.ndarray,
    ego2global_cam: np.ndarray,
    cam2ego: np.ndarray,
) -> np.ndarray:
    """[4, 4] float64 pose taking LiDAR points into the camera frame (all inputs [4, 4])."""
    return compose(invert_pose(cam2ego), invert_pose(ego2global_cam), ego2global_lidar, lidar2ego)


def outside_box(points: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """[P] bool, True where [P, 3] points lie outside the axis-aligned box
    ``(x0, y0, z0, x1, y1, z1)`` (used to drop returns from the ego vehicle's body)."""
    lo, hi = np.asarray(box[:3]), np.asarray(box[3:])
    return ~np.all((points >= lo) & (points <= hi), axis=1)


def project_lidar_targets(
    points_cam: np.ndarray,
    semantics: np.ndarray,
    intrinsic: np.ndarray,
    width: int,
    height: int,
    min_depth: float,
    hidden: HiddenPointTest | None = None,
) -> PixelTargets:
    """Sparse targets from LiDAR points already in the camera frame.

    Args:
        points_cam: [P, 3] points in the camera frame.
        semantics: [P] uint8 Occ3D classes of the points.
        intrinsic: [3, 3]; width, height: image size in pixels.
        min_depth: points nearer than this (camera z) are dropped.
        hidden: drops the pixels whose point the camera cannot see; None keeps them all.
    Returns:
        One target per hit pixel at the pixel centre, from the nearest point in that pixel.
    """
    uv, depth = project_to_image(points_cam, intrinsic)
    near = depth > min_depth
    uv, depth, semantics = uv[near], depth[near], semantics[near]
    keep = nearest_per_pixel(uv, depth, width, height)
    if hidden is not None:
        keep = keep[~hidden.hidden(uv[keep], depth[keep], width, height)]
    centres = np.floor(uv[keep]) + 0.5
    return PixelTargets(
        uv=centres,
        depth=depth[keep].astype(np.float32),
        semantics=semantics[keep].astype(np.uint8),
        confidence=np.ones(len(keep), dtype=np.float32),
    )
