"""Pictures of a semantic occupancy volume [X, Y, Z] (Occ3D layout, ego frame x forward,
y left, z up): a top-down view and an oblique 3D view.

Voxels whose class is free or ignore, or where an optional mask is False, are empty and not
drawn; empty space is white.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from renderlss.geometry.grid import VoxelGrid
from renderlss.vis.colormaps import FREE_COLOUR, label_palette

EGO_MARKER_FILL = (255, 0, 0)
EGO_MARKER_OUTLINE = (0, 0, 0)

# Brightness of the three cube faces the oblique view shows: light comes from above.
FACE_SHADES = np.array([1.0, 0.8, 0.6])  # top (+z), rear (-x), right (-y)


def occupied_voxels(
    semantics: np.ndarray, free_index: int, ignore_index: int, mask: np.ndarray | None
) -> np.ndarray:
    """[X, Y, Z] bool: voxels with a class (not free, not ignore) and inside ``mask``."""
    semantics = np.asarray(semantics)
    if semantics.ndim != 3:
        raise ValueError(f"semantics: expected [X, Y, Z], got shape {semantics.shape}")
    occupied = (semantics != free_index) & (semantics != ignore_index)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != semantics.shape:
            raise ValueError(f"mask: shape {mask.shape} != semantics {semantics.shape}")
        occupied &= mask.astype(bool)
    return occupied


def top_occupied(occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Highest occupied voxel of every (x, y) column.

    Args:
        occupied: [X, Y, Z] bool.
    Returns:
        top: [X, Y] int64 z index of the highest occupied voxel (0 where none);
        any: [X, Y] bool, the column has an occupied voxel.
    """
    any_occupied = occupied.any(axis=2)
    depth_from_top = np.argmax(occupied[:, :, ::-1], axis=2)
    top = np.where(any_occupied, occupied.shape[2] - 1 - depth_from_top, 0)
    return top, any_occupied


def bev_to_picture(columns: np.ndarray) -> np.ndarray:
    """Top-down picture orientation: x forward points up, y left points left.

    Args:
        columns: [X, Y, ...] indexed by voxel column.
    Returns:
        [X, Y, ...] with picture row r = x index X-1-r and column c = y index Y-1-c.
    """
    return columns[::-1, ::-1]


def ego_marker_polygon(
    grid: VoxelGrid, pixels_per_voxel: int, size: float
) -> list[tuple[float, float]]:
    """Triangle in picture pixels at the ego origin, pointing forward (up), ``size`` pixels long."""
    origin = -grid.lower[:2] / grid.size[:2]  # continuous voxel coordinates of ego (0, 0)
    shape = np.asarray(grid.shape[:2], dtype=np.float64)
    row, col = (shape - origin) * pixels_per_voxel
    half = size / 2
    return [(col, row - half), (col - 0.6 * half, row + half), (col + 0.6 * half, row + half)]


def bev_view(
    semantics: np.ndarray,
    free_index: int,
    class_names: Sequence[str],
    *,
    grid: VoxelGrid | None = None,
    mask: np.ndarray | None = None,
    pixels_per_voxel: int = 3,
    height_shading: float = 0.3,
    ignore_index: int = 255,
) -> np.ndarray:
    """Top-down view: each (x, y) column painted with the class of its highest occupied voxel.

    Orientation: x (forward) points up in the picture and y (left) points left, so the
    picture is what a viewer above the car, facing forward, sees. Lower tops are darker by up
    to ``height_shading`` so that objects stand out from the ground. With ``grid`` the ego
    origin is marked by a red triangle pointing forward.

    Args:
        semantics: [X, Y, Z] integer classes (``free_index`` = free).
        class_names: names of classes 0..free_index-1 (colours of ``class_colour``).
        grid: the grid of ``semantics`` (its shape must match).
        mask: [X, Y, Z] bool, voxels to consider (e.g. ``mask_camera``); None = all.
    Returns:
        [X * pixels_per_voxel, Y * pixels_per_voxel, 3] uint8 RGB.
    """
    if free_index != len(class_names):
        raise ValueError(f"bev_view: free_index {free_index} != {len(class_names)} class names")
    occupied = occupied_voxels(semantics, free_index, ignore_index, mask)
    if grid is not None and grid.shape != occupied.shape:
        raise ValueError(f"bev_view: grid shape {grid.shape} != semantics {occupied.shape}")
    top, any_occupied = top_occupied(occupied)
    top_class = np.take_along_axis(np.asarray(semantics), top[..., None], axis=2)[..., 0]

    num_z = occupied.shape[2]
    shade = 1.0 - height_shading * (num_z - 1 - top) / max(num_z - 1, 1)
    colours = label_palette(class_names, ignore_index)[top_class.astype(np.int64)]
    colours = np.round(colours * shade[..., None]).astype(np.uint8)
    colours[~any_occupied] = FREE_COLOUR

    picture = bev_to_picture(colours)
    picture = np.repeat(np.repeat(picture, pixels_per_voxel, axis=0), pixels_per_voxel, axis=1)
    if grid is None:
        return np.ascontiguousarray(picture)
    image = Image.fromarray(np.ascontiguousarray(picture))
    size = max(8.0, min(picture.shape[:2]) / 25)
    ImageDraw.Draw(image).polygon(
        ego_marker_polygon(grid, pixels_per_voxel, size),
        fill=EGO_MARKER_FILL,
        outline=EGO_MARKER_OUTLINE,
    )
    return np.asarray(image)


def oblique_axes(scale: int) -> np.ndarray:
    """[2, 3] integer projection of voxel index steps (x, y, z) to picture (row, column).

    +x goes up-right, +y up-left (both away from the viewer, who stands behind-right of the
    ego, above it), +z straight up; a voxel's top face is 4*scale wide and 2*scale high.
    """
    return scale * np.array([[-1, -1, -2], [2, -2, 0]])


def cube_sprite(axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels covered by the unit cube [0, 1]^3 under ``axes``, and which face each shows.

    A pixel (r, c) relative to the projected corner (0, 0, 0) belongs to a face when its
    centre (r + 0.5, c + 0.5) lies inside that face's projection.

    Args:
        axes: [2, 3] projection (see ``oblique_axes``).
    Returns:
        offsets: [P, 2] int64 (row, column); face: [P] int64, 0 top, 1 rear (-x), 2 right (-y).
    """
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]).T
    projected = axes @ corners  # [2, 8]
    rows = np.arange(projected[0].min(), projected[0].max())
    cols = np.arange(projected[1].min(), projected[1].max())
    centres = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2) + 0.5
    face = np.full(len(centres), -1)
    # Each visible face: its fixed axis and value; the other two axes span it.
    faces = [(2, 1.0), (0, 0.0), (1, 0.0)]
    for face_id, (fixed, value) in reversed(list(enumerate(faces))):
        free_axes = [a for a in range(3) if a != fixed]
        params = np.linalg.solve(
            axes[:, free_axes].astype(np.float64), (centres - value * axes[:, fixed]).T
        ).T  # [P, 2]
        inside = np.all((params >= 0) & (params < 1), axis=1)
        face[inside] = face_id
    keep = face >= 0
    return (centres[keep] - 0.5).astype(np.int64), face[keep]


def visible_voxels(occupied: np.ndarray) -> np.ndarray:
    """[X, Y, Z] bool: occupied voxels not hidden behind their rear, right and top neighbours
    (a voxel whose three viewer-facing neighbours are occupied cannot be seen)."""
    padded = np.pad(occupied, 1, constant_values=False)
    core = (slice(1, -1),) * 3
    behind = padded[:-2, 1:-1, 1:-1]  # x - 1
    right = padded[1:-1, :-2, 1:-1]  # y - 1
    above = padded[1:-1, 1:-1, 2:]  # z + 1
    return padded[core] & ~(behind & right & above)


def perspective_view(
    semantics: np.ndarray,
    free_index: int,
    class_names: Sequence[str],
    *,
    mask: np.ndarray | None = None,
    scale: int = 2,
    ignore_index: int = 255,
) -> np.ndarray:
    """Oblique (isometric) 3D view of the occupied voxels as shaded cubes.

    The viewer looks from behind-right and above the ego: x (forward) points up-right in the
    picture, y (left) up-left, z up. Each cube shows its top face at full brightness and its
    rear and right faces darker (``FACE_SHADES``); nearer cubes cover farther ones (z-buffer
    on the depth along the viewing direction, exact for equal cubes on a grid).

    Args:
        semantics: [X, Y, Z] integer classes (``free_index`` = free).
        mask: [X, Y, Z] bool, voxels to draw; None = all occupied ones.
        scale: pixels per half cube width (the picture is 2*scale*(X+Y) wide).
    Returns:
        [scale * (X + Y + 2Z), 2 * scale * (X + Y), 3] uint8 RGB.
    """
    if free_index != len(class_names):
        raise ValueError(
            f"perspective_view: free_index {free_index} != {len(class_names)} class names"
        )
    occupied = occupied_voxels(semantics, free_index, ignore_index, mask)
    num_x, num_y, num_z = occupied.shape
    axes = oblique_axes(scale)
    height, width = scale * (num_x + num_y + 2 * num_z), 2 * scale * (num_x + num_y)
    # Picture position of voxel corner (0, 0, 0) so that the whole grid fits exactly.
    anchor = np.array([height, 2 * scale * num_y])

    voxels = np.argwhere(visible_voxels(occupied))  # [N, 3]
    # Depth along the viewing direction, the null space of ``axes``: (1, 1, -1).
    order = np.argsort(voxels @ np.array([1, 1, -1]), kind="stable")
    voxels = voxels[order]
    offsets, face = cube_sprite(axes)
    corner = voxels @ axes.T + anchor  # [N, 2]
    pixel = corner[:, None, :] + offsets[None, :, :]  # [N, P, 2]
    flat = (pixel[..., 0] * width + pixel[..., 1]).ravel()
    # Nearest voxel first, then sprite pixel: the smallest key per picture pixel wins.
    key = (np.arange(len(voxels))[:, None] * len(offsets) + np.arange(len(offsets))).ravel()
    nearest = np.full(height * width, np.iinfo(np.int64).max)
    np.minimum.at(nearest, flat, key)

    drawn = nearest < np.iinfo(np.int64).max
    voxel_of_pixel = voxels[nearest[drawn] // len(offsets)]
    classes = np.asarray(semantics)[tuple(voxel_of_pixel.T)].astype(np.int64)
    shade = FACE_SHADES[face[nearest[drawn] % len(offsets)]]
    picture = np.full((height * width, 3), FREE_COLOUR, dtype=np.uint8)
    colours = label_palette(class_names, ignore_index)[classes] * shade[:, None]
    picture[drawn] = np.round(colours).astype(np.uint8)
    return picture.reshape(height, width, 3)
