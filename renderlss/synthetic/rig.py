"""The sensor rig of the synthetic car: six cameras and a 32-beam spinning LiDAR, placed like
the nuScenes rig (a Renault Zoe with its roof-mounted LIDAR_TOP), and the car body the LiDAR
sees.

Camera intrinsics are defined at the nuScenes resolution (1600x900) and scaled to the
generated size; with continuous pixel coordinates a resize by ``s`` scales ``fx, fy, cx, cy``
by exactly ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderlss.geometry import matrix_to_quaternion, pose_matrix, yaw_to_quaternion

REFERENCE_WIDTH = 1600
REFERENCE_HEIGHT = 900

# Focal lengths (pixels at 1600x900) for the horizontal fields of view of the rig:
# about 70 degrees for the front and side cameras, about 110 degrees for the rear one.
FOCAL_NARROW = 0.5 * REFERENCE_WIDTH / np.tan(np.radians(70.0 / 2))
FOCAL_WIDE = 0.5 * REFERENCE_WIDTH / np.tan(np.radians(110.0 / 2))

# name, position in ego (m), yaw / pitch / roll (degrees), focal length at 1600x900.
_CAMERAS = (
    ("CAM_FRONT", (1.70, 0.016, 1.51), 0.0, 0.6, -0.3, FOCAL_NARROW),
    ("CAM_FRONT_RIGHT", (1.55, -0.49, 1.50), -55.0, -0.4, 0.5, FOCAL_NARROW),
    ("CAM_FRONT_LEFT", (1.52, 0.49, 1.51), 55.0, 0.3, -0.6, FOCAL_NARROW),
    ("CAM_BACK", (0.03, 0.0, 1.56), 180.0, 1.0, 0.2, FOCAL_WIDE),
    ("CAM_BACK_LEFT", (1.04, 0.48, 1.56), 110.0, -0.7, 0.4, FOCAL_NARROW),
    ("CAM_BACK_RIGHT", (1.04, -0.48, 1.56), -110.0, 0.5, -0.5, FOCAL_NARROW),
)
CAMERA_NAMES = tuple(c[0] for c in _CAMERAS)
LIDAR_NAME = "LIDAR_TOP"

# LIDAR_TOP: on the roof, its x axis to the car's right and y forward (as in nuScenes).
LIDAR_POSITION = (0.94, 0.0, 1.84)
LIDAR_YAW_DEG = -90.0
LIDAR_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)
# A camera fires when the spinning LiDAR (clockwise seen from above, pointing forward at its
# own timestamp) sweeps past its axis, plus a fixed trigger delay.
CAMERA_TRIGGER_DELAY_S = 0.002

# The car body as the LiDAR sees it, ego frame: (min corner, max corner) of two boxes. The
# lowest beams hit the bonnet, the boot and the cabin roof, a few percent of the returns.
EGO_BODY_BOXES = (
    ((-1.00, -0.87, 0.15), (3.10, 0.87, 0.90)),  # chassis
    ((0.10, -0.70, 0.90), (1.60, 0.70, 1.40)),  # cabin
)


@dataclass(frozen=True)
class CameraSpec:
    """One camera: ``T_ego_from_cam`` [4, 4], ``intrinsic`` [3, 3] at ``width x height``."""

    name: str
    ego_from_cam: np.ndarray
    intrinsic: np.ndarray
    width: int
    height: int
    time_offset_s: float


def _camera_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """[3, 3] rotation camera -> ego of a camera looking along ego heading ``yaw``, tilted up
    by ``pitch`` (about camera x) and rolled by ``roll`` (about camera z)."""
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    base = np.stack([right, down, forward], axis=1)
    # Positive pitch raises the optical axis: rotate about camera x by -pitch (y is down).
    cp, sp = np.cos(-pitch), np.sin(-pitch)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    cr, sr = np.cos(roll), np.sin(roll)
    spin = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return base @ tilt @ spin


def lidar_pass_offset(yaw_deg: float, lidar_rate_hz: float) -> float:
    """Seconds from the LiDAR timestamp until its beam passes heading ``yaw_deg``."""
    turned = (-np.radians(yaw_deg) + np.pi) % (2 * np.pi) - np.pi
    if turned == -np.pi:
        turned = np.pi
    return float(turned / (2 * np.pi) / lidar_rate_hz)


def camera_rig(width: int, height: int, lidar_rate_hz: float) -> list[CameraSpec]:
    """The six cameras, intrinsics scaled from 1600x900 to ``width x height``."""
    sx, sy = width / REFERENCE_WIDTH, height / REFERENCE_HEIGHT
    cams = []
    for name, position, yaw, pitch, roll, focal in _CAMERAS:
        ego_from_cam = np.eye(4)
        ego_from_cam[:3, :3] = _camera_rotation(yaw, pitch, roll)
        ego_from_cam[:3, 3] = position
        # Round-trip through the quaternion that goes into the tables, so the rig used for
        # rendering is exactly the one a reader reconstructs.
        ego_from_cam = pose_matrix(matrix_to_quaternion(ego_from_cam[:3, :3]), position)
        intrinsic = np.array(
            [
                [focal * sx, 0.0, 0.5 * REFERENCE_WIDTH * sx],
                [0.0, focal * sy, 0.5 * REFERENCE_HEIGHT * sy],
                [0.0, 0.0, 1.0],
            ]
        )
        offset = CAMERA_TRIGGER_DELAY_S + lidar_pass_offset(yaw, lidar_rate_hz)
        cams.append(CameraSpec(name, ego_from_cam, intrinsic, width, height, offset))
    return cams


def lidar_extrinsic() -> np.ndarray:
    """[4, 4] ``T_ego_from_lidar``."""
    return pose_matrix(yaw_to_quaternion(np.radians(LIDAR_YAW_DEG)), LIDAR_POSITION)


def lidar_directions(azimuth_steps: int) -> np.ndarray:
    """[32, A, 3] unit ray directions in the LIDAR_TOP frame, beam (ring) by azimuth.

    Azimuth ``a`` of column ``k`` is ``2 pi k / A`` about the LiDAR z axis from its x axis.
    """
    elevation = np.radians(LIDAR_ELEVATIONS_DEG)[:, None]
    azimuth = (2 * np.pi * np.arange(azimuth_steps) / azimuth_steps)[None, :]
    return np.stack(
        np.broadcast_arrays(
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
        ),
        axis=-1,
    )
