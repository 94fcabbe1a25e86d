"""Rigid transforms between the frames of a nuScenes-format log.

Quaternions are ``[w, x, y, z]`` (nuScenes / pyquaternion order). A pose ``T_a_from_b`` is a
4x4 float64 matrix mapping homogeneous points of frame ``b`` into frame ``a``; nuScenes'
calibrated_sensor records are sensor->ego and ego_pose records are ego->global.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A stored quaternion is rounded to float32/JSON precision; anything further off is a
# corrupt or mistyped calibration, not rounding.
UNIT_QUATERNION_TOLERANCE = 1e-3


def quaternion_to_matrix(q: Sequence[float], what: str = "quaternion") -> np.ndarray:
    """Rotation matrix of a unit quaternion.

    Args:
        q: [4] quaternion ``[w, x, y, z]``.
        what: names the record in the error message (file, token, field).
    Returns:
        [3, 3] float64 rotation matrix.
    Raises:
        ValueError: if ``q`` has not 4 finite entries or is not unit length.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(f"{what}: expected 4 finite numbers [w, x, y, z], got {q.tolist()}")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > UNIT_QUATERNION_TOLERANCE:
        raise ValueError(f"{what}: quaternion {q.tolist()} is not unit length (norm {norm:.6f})")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[w, x, y, z]`` (w >= 0) of a [3, 3] rotation matrix."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(r)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0] * 4
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def yaw_to_quaternion(yaw: float) -> np.ndarray:
    """[4] quaternion of a rotation by ``yaw`` radians about +z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def yaw_of_quaternion(q: Sequence[float]) -> float:
    """Heading (radians, about +z) of the rotated x axis of quaternion ``q``."""
    r = quaternion_to_matrix(q)
    return float(np.arctan2(r[1, 0], r[0, 0]))


def pose_matrix(
    rotation: Sequence[float], translation: Sequence[float], what: str = "pose"
) -> np.ndarray:
    """[4, 4] float64 pose from a quaternion ``[w, x, y, z]`` and a [3] translation."""
    t = np.asarray(translation, dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise ValueError(f"{what}: expected 3 finite numbers for translation, got {t.tolist()}")
    pose = np.eye(4)
    pose[:3, :3] = quaternion_to_matrix(rotation, what)
    pose[:3, 3] = t
    return pose


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid [4, 4] pose (or a [..., 4, 4] stack)."""
    pose = np.asarray(pose, dtype=np.float64)
    rot_t = np.swapaxes(pose[..., :3, :3], -1, -2)
    inv = np.zeros_like(pose)
    inv[..., :3, :3] = rot_t
    inv[..., :3, 3] = -(rot_t @ pose[..., :3, 3:4])[..., 0]
    inv[..., 3, 3] = 1.0
    return inv


def compose(*poses: np.ndarray) -> np.ndarray:
    """Product ``poses[0] @ poses[1] @ ...`` of [4, 4] poses (applied right to left)."""
    out = np.eye(4)
    for p in poses:
        out = out @ np.asarray(p, dtype=np.float64)
    return out


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a [4, 4] pose to [N, 3] points; returns [N, 3] in the points' dtype."""
    pts = np.asarray(points)
    pose = np.asarray(pose, dtype=np.float64)
    out = pts.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
    return out.astype(pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64)
