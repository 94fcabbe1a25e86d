"""Exact ray casting against the analytic world: the ground plane z = 0 and upright boxes.

Rays of one sensor share an origin and are laid out as a 2D image (camera pixels, or LiDAR
beams x azimuth columns). Each box is only tested against the rays of its *window*: the
image rectangle that bounds its projection, so the cost per box is proportional to its
size on screen and boxes outside the field of view cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderlss.synthetic.world import Boxes

NOTHING = -2  # the ray hits nothing within range
GROUND = -1  # the ray hits the ground plane
# Direction components below this are treated as parallel to a box face.
PARALLEL_EPS = 1e-12
# Projections are bounded with one pixel / column of margin against rounding.
WINDOW_MARGIN = 1

# The 12 edges of a box as pairs of corner indices (corners ordered by the bits of 0..7).
_BOX_EDGES = np.array(
    [[0, 1], [2, 3], [4, 5], [6, 7], [0, 2], [1, 3], [4, 6], [5, 7], [0, 4], [1, 5], [2, 6], [3, 7]]
)
_CORNER_SIGNS = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)]) * 2.0 - 1.0


@dataclass
class Hits:
    """First hits of a ray image [H, W]: ``t`` ray parameter (inf: none), ``part`` box index,
    GROUND or NOTHING, ``normal`` [H, W, 3] unit surface normal (global), and ``coverage``
    [P] number of rays that hit each box whether or not something nearer hides it."""

    t: np.ndarray
    part: np.ndarray
    normal: np.ndarray
    coverage: np.ndarray


def box_corners(boxes: Boxes) -> np.ndarray:
    """[P, 8, 3] corners of upright boxes."""
    c, s = np.cos(boxes.yaw), np.sin(boxes.yaw)
    local = _CORNER_SIGNS[None] * boxes.half[:, None, :]
    x = c[:, None] * local[..., 0] - s[:, None] * local[..., 1]
    y = s[:, None] * local[..., 0] + c[:, None] * local[..., 1]
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes.centre[:, None, :]


def points_in_boxes(points: np.ndarray, boxes: Boxes) -> np.ndarray:
    """[N, P] bool: point n lies inside (or on) box p. Brute force, for small inputs."""
    rel = points[:, None, :] - boxes.centre[None]
    c, s = np.cos(boxes.yaw), np.sin(boxes.yaw)
    x = c * rel[..., 0] + s * rel[..., 1]
    y = -s * rel[..., 0] + c * rel[..., 1]
    local = np.stack([x, y, rel[..., 2]], axis=-1)
    return np.all(np.abs(local) <= boxes.half[None], axis=-1)


def intersect_box(
    origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray, half: np.ndarray, yaw: float
) -> np.ndarray:
    """Slab test of rays from one origin against one upright box.

    Args:
        origin: [3]; dirs: [M, 3] (any length); centre, half: [3]; yaw: box heading.
    Returns:
        [M] entry parameter t (inf where missed or where the origin is inside the box).
    """
    c, s = np.cos(yaw), np.sin(yaw)
    rel = origin - centre
    local_origin = (c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2])
    local_dirs = (
        c * dirs[:, 0] + s * dirs[:, 1],
        -s * dirs[:, 0] + c * dirs[:, 1],
        dirs[:, 2],
    )
    t_near = np.zeros(len(dirs))
    t_far = np.full(len(dirs), np.inf)
    for o, d, h in zip(local_origin, local_dirs, half):
        inv = 1.0 / np.where(np.abs(d) < PARALLEL_EPS, PARALLEL_EPS, d)
        t1 = (-h - o) * inv
        t2 = (h - o) * inv
        np.maximum(t_near, np.minimum(t1, t2), out=t_near)
        np.minimum(t_far, np.maximum(t1, t2), out=t_far)
    return np.where((t_near <= t_far) & (t_near > 0.0), t_near, np.inf)


def box_normals(points: np.ndarray, boxes: Boxes, part: np.ndarray) -> np.ndarray:
    """[N, 3] outward unit normals of the faces of boxes ``part`` [N] holding ``points``
    [N, 3]: the face whose plane the point is closest to, relative to the box size."""
    c, s = np.cos(boxes.yaw[part]), np.sin(boxes.yaw[part])
    rel = points - boxes.centre[part]
    local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1)
    scaled = local / boxes.half[part]
    axis = np.argmax(np.abs(scaled), axis=1)
    rows = np.arange(len(points))
    normal = np.zeros_like(local)
    normal[rows, axis] = np.sign(scaled[rows, axis])
    return np.stack(
        [c * normal[:, 0] - s * normal[:, 1], s * normal[:, 0] + c * normal[:, 1], normal[:, 2]], 1
    )


def cast(
    origin: np.ndarray,
    dirs: np.ndarray,
    boxes: Boxes,
    windows: list[tuple[np.ndarray, np.ndarray] | None],
    max_distance: float,
) -> Hits:
    """First hits of rays [H, W] from ``origin`` against the ground and ``boxes``.

    Args:
        origin: [3] global; dirs: [H, W, 3] global directions (t is in units of their length).
        windows: per box, (rows, cols) index arrays of the rays that may hit it, or None.
        max_distance: hits farther than this (metres, along the ray) are dropped.
    """
    height, width = dirs.shape[:2]
    t_max = max_distance / np.linalg.norm(dirs, axis=-1)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[..., 2] < 0.0, -origin[2] / dirs[..., 2], np.inf)
    t = np.where(t_ground <= t_max, t_ground, np.inf)
    part = np.where(np.isfinite(t), GROUND, NOTHING)
    coverage = np.zeros(len(boxes), dtype=np.int64)
    for i, window in enumerate(windows):
        if window is None:
            continue
        rows, cols = window
        sel = np.ix_(rows, cols)
        t_box = intersect_box(
            origin, dirs[sel].reshape(-1, 3), boxes.centre[i], boxes.half[i], float(boxes.yaw[i])
        ).reshape(len(rows), len(cols))
        hit = t_box <= t_max[sel]
        coverage[i] = int(hit.sum())
        nearer = hit & (t_box < t[sel])
        if not nearer.any():
            continue
        r, c = np.nonzero(nearer)
        t[rows[r], cols[c]] = t_box[r, c]
        part[rows[r], cols[c]] = i
    normal = np.zeros((height, width, 3))
    normal[part == GROUND] = (0.0, 0.0, 1.0)
    on_box = part >= 0
    points = origin + t[on_box][:, None] * dirs[on_box]
    normal[on_box] = box_normals(points, boxes, part[on_box])
    return Hits(t, part, normal, coverage)


def _index_range(lo: float, hi: float, size: int) -> np.ndarray:
    """Indices k in [0, size) whose centre k + 0.5 may lie in [lo, hi] (with margin)."""
    first = max(int(np.ceil(lo - 0.5)) - WINDOW_MARGIN, 0)
    last = min(int(np.floor(hi - 0.5)) + WINDOW_MARGIN, size - 1)
    return np.arange(first, last + 1)


def camera_windows(
    boxes: Boxes, cam_from_global: np.ndarray, intrinsic: np.ndarray, width: int, height: int
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Pixel windows of boxes: bounds of the projection of each box clipped to z > 0.

    A box crossing the camera plane is clipped there: its visible part is the convex hull
    of the corners in front and the points where its edges cross a plane just in front of
    the camera, and the projection of a convex hull is bounded by its vertices.
    """
    near = 1e-3
    corners = box_corners(boxes) @ cam_from_global[:3, :3].T + cam_from_global[:3, 3]
    z = corners[..., 2]
    a, b = corners[:, _BOX_EDGES[:, 0]], corners[:, _BOX_EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - near) * (zb - near) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(crosses, (near - za) / (zb - za), 0.0)
    crossing = a + lam[..., None] * (b - a)
    points = np.concatenate([corners, crossing], axis=1)
    usable = np.concatenate([z > near, crosses], axis=1)
    safe = np.where(usable[..., None], points, (0.0, 0.0, 1.0))
    proj = safe @ intrinsic.T
    uv = proj[..., :2] / proj[..., 2:3]
    big = np.inf
    u_lo = np.where(usable, uv[..., 0], big).min(axis=1)
    u_hi = np.where(usable, uv[..., 0], -big).max(axis=1)
    v_lo = np.where(usable, uv[..., 1], big).min(axis=1)
    v_hi = np.where(usable, uv[..., 1], -big).max(axis=1)
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for i in range(len(boxes)):
        if not usable[i].any() or u_hi[i] < 0 or v_hi[i] < 0 or u_lo[i] > width or v_lo[i] > height:
            out.append(None)
            continue
        cols = _index_range(u_lo[i], u_hi[i], width)
        rows = _index_range(v_lo[i], v_hi[i], height)
        out.append((rows, cols) if len(rows) and len(cols) else None)
    return out


def lidar_windows(
    boxes: Boxes, lidar_from_global: np.ndarray, elevations: np.ndarray, azimuth_steps: int
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """(beam rows, azimuth columns) that may hit each box; ``lidar_from_global`` must be a
    rotation about z. Azimuth column k looks along 2 pi k / A; columns wrap around."""
    local = boxes.transformed(lidar_from_global)
    corners = box_corners(local)
    step = 2 * np.pi / azimuth_steps
    c, s = np.cos(local.yaw), np.sin(local.yaw)
    rel = -local.centre[:, :2]
    sensor_in_box = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], 1)
    # Horizontal distance from the sensor to each box footprint (0 when above/below it).
    gap = np.maximum(np.abs(sensor_in_box) - local.half[:, :2], 0.0)
    rho_min = np.hypot(gap[:, 0], gap[:, 1])
    rho_max = np.hypot(corners[..., 0], corners[..., 1]).max(axis=1)
    z_lo = local.centre[:, 2] - local.half[:, 2]
    z_hi = local.centre[:, 2] + local.half[:, 2]
    el_lo = np.arctan2(z_lo, np.where(z_lo >= 0, rho_max, rho_min))
    el_hi = np.arctan2(z_hi, np.where(z_hi >= 0, rho_min, rho_max))
    first_row = np.searchsorted(elevations, el_lo - 1e-9, side="left")
    last_row = np.searchsorted(elevations, el_hi + 1e-9, side="right")
    centre_az = np.arctan2(local.centre[:, 1], local.centre[:, 0])
    corner_az = np.arctan2(corners[..., 1], corners[..., 0])
    delta = (corner_az - centre_az[:, None] + np.pi) % (2 * np.pi) - np.pi
    first_col = np.floor((centre_az + delta.min(axis=1)) / step).astype(np.int64) - WINDOW_MARGIN
    last_col = np.ceil((centre_az + delta.max(axis=1)) / step).astype(np.int64) + WINDOW_MARGIN
    all_cols = np.arange(azimuth_steps)
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for i in range(len(local)):
        if first_row[i] >= last_row[i]:
            out.append(None)
            continue
        rows = np.arange(first_row[i], last_row[i])
        if rho_min[i] == 0.0 or last_col[i] - first_col[i] >= azimuth_steps:
            cols = all_cols
        else:
            cols = np.arange(first_col[i], last_col[i] + 1) % azimuth_steps
        out.append((rows, cols))
    return out
