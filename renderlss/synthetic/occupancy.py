"""Occ3D-style labels from the analytic world: voxel semantics by sub-sampling each voxel,
and visibility masks by walking sensor rays through the grid (3D DDA).

- ``semantics``: a voxel is occupied when a solid shares volume with it (the ground is
  solid below z = 0; boxes are solid); its class is the solid with most of the voxel's
  ``n^3`` sub-sample points (at least one vote for any overlapping solid; ties go to the
  lower class index, i.e. objects before ground).
- ``mask_lidar``: voxels traversed or hit by the LiDAR rays of the keyframe.
- ``mask_camera``: voxels traversed by camera pixel rays up to and including the first
  occupied voxel (Occ3D's definition).
"""

from __future__ import annotations

import numpy as np

from renderlss.data.classes import ClassesConfig, learning_map_table
from renderlss.geometry import invert_pose
from renderlss.geometry.grid import VoxelGrid
from renderlss.synthetic.raycast import PARALLEL_EPS, box_corners, points_in_boxes
from renderlss.synthetic.world import SceneWorld

# Relative shortening of each ray's exit parameter against rounding at the grid boundary.
EXIT_MARGIN = 1e-9
# Finished rays are dropped from the arrays once fewer than this fraction is still walking.
COMPACT_FRACTION = 0.7


def _subsample_offsets(n: int) -> np.ndarray:
    """[n] sub-sample positions inside a voxel, as fractions of its edge."""
    return (np.arange(n) + 0.5) / n


def _ground_votes(
    world: SceneWorld,
    global_from_ego: np.ndarray,
    grid: VoxelGrid,
    table: np.ndarray,
    n: int,
    num_classes: int,
) -> np.ndarray:
    """[X, Y, Z, C] votes of the ground: the class histogram of the n x n sub-columns of each
    column, times the number of sub-samples below the surface in each layer (at least one
    for a layer that reaches below the surface)."""
    shape = grid.shape
    offsets = _subsample_offsets(n)
    cx = grid.lower[0] + (np.arange(shape[0])[:, None] + offsets).reshape(-1) * grid.size[0]
    cy = grid.lower[1] + (np.arange(shape[1])[:, None] + offsets).reshape(-1) * grid.size[1]
    xy = np.stack(np.meshgrid(cx, cy, indexing="ij"), axis=-1).reshape(-1, 2)
    xy_global = xy @ global_from_ego[:2, :2].T + global_from_ego[:2, 3]
    ground_class = table[world.ground_label(xy_global)].reshape(shape[0], n, shape[1], n)
    ground_class = ground_class.transpose(0, 2, 1, 3).reshape(shape[0], shape[1], n * n)
    column_hist = np.stack([(ground_class == c).sum(-1) for c in range(num_classes)], axis=-1)
    z_sub = grid.lower[2] + (np.arange(shape[2])[:, None] + offsets) * grid.size[2]
    below = ((z_sub + global_from_ego[2, 3]) < 0.0).sum(-1)  # [Z]
    reaches_below = grid.lower[2] + np.arange(shape[2]) * grid.size[2] + global_from_ego[2, 3] < 0
    below = np.where(reaches_below, np.maximum(below, 1), 0)
    votes = np.zeros((*shape, num_classes), dtype=np.int32)
    for k in np.nonzero(below)[0]:
        votes[:, :, k, :] = column_hist * below[k]
    return votes


def _box_overlaps_voxels(
    centres: np.ndarray, voxel_size: np.ndarray, centre: np.ndarray, half: np.ndarray, yaw: float
) -> np.ndarray:
    """[M] bool: axis-aligned voxels (centres [M, 3]) share volume with an upright box
    (separating axis test on the voxel axes and the box's horizontal axes)."""
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    rel = centres - centre
    vh = 0.5 * voxel_size
    gap_x = np.abs(rel[:, 0]) < vh[0] + c * half[0] + s * half[1]
    gap_y = np.abs(rel[:, 1]) < vh[1] + s * half[0] + c * half[1]
    gap_z = np.abs(rel[:, 2]) < vh[2] + half[2]
    cos, sin = np.cos(yaw), np.sin(yaw)
    along = np.abs(cos * rel[:, 0] + sin * rel[:, 1]) < half[0] + c * vh[0] + s * vh[1]
    across = np.abs(-sin * rel[:, 0] + cos * rel[:, 1]) < half[1] + s * vh[0] + c * vh[1]
    return gap_x & gap_y & gap_z & along & across


def voxel_semantics(
    world: SceneWorld,
    t: float,
    global_from_ego: np.ndarray,
    grid: VoxelGrid,
    classes: ClassesConfig,
    subsamples: int,
) -> np.ndarray:
    """[X, Y, Z] uint8 Occ3D classes (``free_index`` where empty) in the ego frame of
    ``global_from_ego`` (level, as every ego pose of the world) at scene time ``t``.

    Each solid votes with the number of a voxel's ``subsamples^3`` points inside it, and
    with at least one vote where it overlaps the voxel at all, so thin solids (poles,
    signs) are not lost between sub-samples.
    """
    shape = grid.shape
    num_classes = len(classes.occ_class_names)
    table = learning_map_table(classes)
    offsets = _subsample_offsets(subsamples)
    counts = _ground_votes(world, global_from_ego, grid, table, subsamples, num_classes)
    counts = counts.reshape(-1, num_classes)

    boxes = world.boxes_at(t).transformed(invert_pose(global_from_ego))
    corners = box_corners(boxes)
    lo_idx = np.floor((corners.min(axis=1) - grid.lower) / grid.size).astype(np.int64)
    hi_idx = np.floor((corners.max(axis=1) - grid.lower) / grid.size).astype(np.int64)
    lo_idx = np.maximum(lo_idx, 0)
    hi_idx = np.minimum(hi_idx, np.asarray(shape) - 1)
    flats, cls, votes = [], [], []
    for i in np.nonzero(np.all(hi_idx >= lo_idx, axis=1))[0]:
        occ_class = int(table[boxes.label[i]])
        if occ_class >= num_classes:
            continue
        ranges = [np.arange(lo_idx[i, a], hi_idx[i, a] + 1) for a in range(3)]
        local_shape = tuple(len(r) for r in ranges)
        sub_axes = [
            grid.lower[a] + (ranges[a][:, None] + offsets).reshape(-1) * grid.size[a]
            for a in range(3)
        ]
        pts = np.stack(np.meshgrid(*sub_axes, indexing="ij"), axis=-1).reshape(-1, 3)
        inside = points_in_boxes(pts, boxes.subset(np.array([i])))[:, 0]
        local_idx = np.floor((pts[inside] - grid.lower) / grid.size).astype(np.int64) - lo_idx[i]
        local_flat = np.ravel_multi_index(tuple(local_idx.T), local_shape)
        box_votes = np.bincount(local_flat, minlength=int(np.prod(local_shape)))
        voxel_idx = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
        centres = grid.lower + (voxel_idx + 0.5) * grid.size
        overlap = _box_overlaps_voxels(
            centres, grid.size, boxes.centre[i], boxes.half[i], float(boxes.yaw[i])
        )
        box_votes = np.where(overlap, np.maximum(box_votes, 1), box_votes)
        keep = box_votes > 0
        flats.append(np.ravel_multi_index(tuple(voxel_idx[keep].T), shape))
        cls.append(np.full(int(keep.sum()), occ_class))
        votes.append(box_votes[keep])
    if flats:
        np.add.at(counts, (np.concatenate(flats), np.concatenate(cls)), np.concatenate(votes))

    semantics = np.argmax(counts, axis=1).astype(np.uint8)
    semantics[counts.sum(axis=1) == 0] = classes.free_index
    return semantics.reshape(shape)


def traverse_voxels(
    origins: np.ndarray,
    dirs: np.ndarray,
    t_end: np.ndarray,
    grid: VoxelGrid,
    stop: np.ndarray | None = None,
) -> np.ndarray:
    """Voxels crossed by rays (Amanatides-Woo DDA, all rays at once).

    Args:
        origins: [N, 3]; dirs: [N, 3] (t in units of their length); t_end: [N] where each
            ray ends (inf: at the grid boundary); the voxel holding the end point counts.
        stop: [X, Y, Z] bool; a ray also ends in (and includes) the first such voxel.
    Returns:
        [X, Y, Z] bool, voxels visited by some ray.
    """
    shape = np.asarray(grid.shape)
    size = int(np.prod(shape))
    # One extra cell at the end parks finished rays until the arrays are compacted.
    visited = np.zeros(size + 1, dtype=bool)
    stop_flat = None if stop is None else np.append(stop.reshape(-1), True)
    o = np.asarray(origins, dtype=np.float64)
    d = np.asarray(dirs, dtype=np.float64)
    d = np.where(np.abs(d) < PARALLEL_EPS, PARALLEL_EPS, d)
    inv = 1.0 / d
    ta, tb = (grid.lower - o) * inv, (grid.upper - o) * inv
    t_in = np.maximum(np.minimum(ta, tb).max(axis=1), 0.0)
    t_out = np.minimum(np.maximum(ta, tb).min(axis=1), t_end)
    # Stop a hair before the exit so rounding never steps a ray out of the grid.
    t_out = t_out - EXIT_MARGIN * (1.0 + np.abs(t_out))
    live = t_in < t_out
    o, d, inv, t_in, t_out = o[live], d[live], inv[live], t_in[live], t_out[live]
    start = o + d * t_in[:, None]
    idx = np.clip(np.floor((start - grid.lower) / grid.size).astype(np.int64), 0, shape - 1)
    step = np.where(d > 0, 1, -1)
    t_next = (grid.lower + (idx + (step > 0)) * grid.size - o) * inv
    t_delta = grid.size * np.abs(inv)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    flat = idx @ strides
    flat_step = step * strides
    # Structure of arrays: per-axis 1D arrays keep every update a plain vectorised op.
    state = [flat, *t_next.T.copy(), *t_delta.T.copy(), *flat_step.T.copy(), t_out]
    while len(state[0]):
        flat, tx, ty, tz, dx, dy, dz, sx, sy, sz, t_out = state
        visited[flat] = True
        on_x = (tx <= ty) & (tx <= tz)
        on_y = ~on_x & (ty <= tz)
        on_z = ~(on_x | on_y)
        go_on = np.minimum(np.minimum(tx, ty), tz) < t_out
        if stop_flat is not None:
            go_on &= ~stop_flat[flat]
        flat += np.where(on_x, sx, np.where(on_y, sy, sz))
        tx += np.where(on_x, dx, 0.0)
        ty += np.where(on_y, dy, 0.0)
        tz += np.where(on_z, dz, 0.0)
        done = ~go_on
        flat[done] = size
        t_out[done] = -np.inf
        alive = len(flat) - int(done.sum())
        if alive < COMPACT_FRACTION * len(flat):
            state = [a[go_on] for a in state]
    return visited[:size].reshape(grid.shape)
