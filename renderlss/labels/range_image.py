"""Spherical range images of a spinning LiDAR's sweep.

A point ``(x, y, z)`` in the LiDAR frame at range ``r = |p|`` has continuous image
coordinates

    u = 0.5 * (1 - atan2(y, x) / pi) * W + column_offset
    v = (1 - (asin(z / r) + f_down) / f) * H,       f = f_up + f_down,

with the pixel convention of ``renderlss.geometry.camera``: pixel (row i, column j) covers
[j, j+1) x [i, i+1) and holds the points with ``floor(u) mod W = j`` and ``floor(v) = i``.
Row 0 is the top of the field of view, column 0 looks backwards (azimuth +-pi, the seam),
column W/2 along the LiDAR's x axis, and azimuth grows to the left (towards smaller u).
Points with ``v`` outside [0, H) lie outside the vertical field of view and are dropped.

Default sensor: the nuScenes LIDAR_TOP, a Velodyne HDL-32E. Its 32 lasers sit at evenly
spaced elevations from -30.67 to +10.67 degrees (1.333 degrees apart; nuScenes rounds the
range to "+10 to -30 degrees"), so the field of view that puts one laser in the middle of
each of the 32 rows reaches half a spacing beyond the outer lasers: +11.33 / -31.33 degrees.
(A +10 / -30 degree image of 32 rows of 1.25 degrees would drop both outer lasers and put two
lasers into some rows.) Columns: nuScenes sweeps hold at most 34,752 points = 32 x 1086 at
20 Hz, an azimuth step of 360 / 1086 = 0.33 degrees, the HDL-32E's step at 20 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderlss.geometry import nearest_per_pixel

# Velodyne HDL-32E (nuScenes LIDAR_TOP): lowest and highest laser elevation, lasers, and the
# columns of a 20 Hz revolution (see the module docstring).
HDL32E_LOWEST_BEAM_DEG = -30.67
HDL32E_HIGHEST_BEAM_DEG = 10.67
HDL32E_BEAMS = 32
HDL32E_COLUMNS = 1086


def beam_centred_fov(lowest_deg: float, highest_deg: float, beams: int) -> tuple[float, float]:
    """``(fov_up_deg, fov_down_deg)`` of an image whose ``beams`` rows are centred on evenly
    spaced lasers from ``lowest_deg`` to ``highest_deg`` (half a spacing beyond each)."""
    half_spacing = 0.5 * (highest_deg - lowest_deg) / (beams - 1)
    return highest_deg + half_spacing, -(lowest_deg - half_spacing)


_HDL32E_FOV_UP, _HDL32E_FOV_DOWN = beam_centred_fov(
    HDL32E_LOWEST_BEAM_DEG, HDL32E_HIGHEST_BEAM_DEG, HDL32E_BEAMS
)


@dataclass(frozen=True)
class RangeImageConfig:
    """Geometry of a spinning LiDAR's range image (defaults: nuScenes' HDL-32E)."""

    fov_up_deg: float = _HDL32E_FOV_UP  # elevation of the image's top edge
    fov_down_deg: float = _HDL32E_FOV_DOWN  # depression of the bottom edge (positive down)
    rows: int = HDL32E_BEAMS  # H: one per laser
    columns: int = HDL32E_COLUMNS  # W: firings per revolution
    # Added to u. 0.5 centres firing azimuths k * 360 / W (the synthetic LiDAR's) in their
    # columns; with 0 they lie on column edges and rounding splits them between two columns.
    column_offset: float = 0.0

    def validate(self, where: str) -> None:
        if self.rows < 1 or self.columns < 1:
            raise ValueError(f"{where}: rows and columns must be >= 1")
        if not self.fov_up_deg + self.fov_down_deg > 0:
            raise ValueError(f"{where}: fov_up_deg + fov_down_deg must be > 0")
        if not -90.0 <= -self.fov_down_deg < self.fov_up_deg <= 90.0:
            raise ValueError(f"{where}: the field of view must lie within [-90, 90] degrees")

    @property
    def fov_rad(self) -> float:
        return float(np.radians(self.fov_up_deg + self.fov_down_deg))


@dataclass
class RangeImage:
    """The nearest return per pixel of one sweep.

    Attributes:
        range: [H, W] float32 metres, 0 where no point falls.
        index: [H, W] int64 index of that point in the projected array, -1 where none.
        outside_fov: points dropped because they lie outside the vertical field of view.
    """

    range: np.ndarray
    index: np.ndarray
    outside_fov: int


def spherical_coordinates(
    points: np.ndarray, config: RangeImageConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous image coordinates and range of LiDAR-frame points.

    Args:
        points: [N, 3] in the LiDAR frame.
    Returns:
        u: [N] in [column_offset, W + column_offset] (not wrapped); v: [N], inside the field
        of view where 0 <= v < H; range: [N] metres. A point at the origin gets v = NaN.
    """
    points = np.asarray(points, dtype=np.float64)
    distance = np.linalg.norm(points, axis=1)
    azimuth = np.arctan2(points[:, 1], points[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        elevation = np.arcsin(np.clip(points[:, 2] / distance, -1.0, 1.0))
    u = 0.5 * (1.0 - azimuth / np.pi) * config.columns + config.column_offset
    v = (1.0 - (elevation + np.radians(config.fov_down_deg)) / config.fov_rad) * config.rows
    return u, v, distance


def pixel_of(
    u: np.ndarray, v: np.ndarray, config: RangeImageConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (row, column) of continuous coordinates, with the azimuth seam wrapped.

    Args:
        u, v: [N] from :func:`spherical_coordinates`.
    Returns:
        rows [N] int64, cols [N] int64 in [0, W), inside [N] bool (v within [0, H)); rows
        are meaningless where ``inside`` is False.
    """
    inside = (v >= 0) & (v < config.rows)
    # floor, then wrap the integer: atan2 = -pi (u = W) and +pi (u = 0) share column 0.
    cols = np.mod(np.floor(u).astype(np.int64), config.columns)
    rows = np.floor(np.where(inside, v, 0.0)).astype(np.int64)
    return rows, cols, inside


def range_image(points: np.ndarray, config: RangeImageConfig) -> RangeImage:
    """Project a sweep, keeping the nearest return per pixel.

    Args:
        points: [N, 3] in the LiDAR frame.
    Returns:
        the range and index images, and how many points fell outside the vertical field of
        view (ties in range keep the earlier point).
    """
    u, v, distance = spherical_coordinates(points, config)
    rows, cols, inside = pixel_of(u, v, config)
    candidates = np.flatnonzero(inside)
    # The shared z-buffer on pixel centres (the seam is already wrapped into [0, W)).
    centres = np.stack([cols[candidates] + 0.5, rows[candidates] + 0.5], axis=1)
    nearest = candidates[
        nearest_per_pixel(centres, distance[candidates], config.columns, config.rows)
    ]
    ranges = np.zeros((config.rows, config.columns), dtype=np.float32)
    index = np.full((config.rows, config.columns), -1, dtype=np.int64)
    ranges[rows[nearest], cols[nearest]] = distance[nearest]
    index[rows[nearest], cols[nearest]] = nearest
    return RangeImage(range=ranges, index=index, outside_fov=int((~inside).sum()))


def points_from_coordinates(
    u: np.ndarray, v: np.ndarray, distance: np.ndarray, config: RangeImageConfig
) -> np.ndarray:
    """The inverse of :func:`spherical_coordinates`: [..., 3] LiDAR-frame points at
    ``distance`` metres along the rays of image coordinates ``u``, ``v`` (each [...])."""
    azimuth = np.pi * (
        1.0 - 2.0 * (np.asarray(u, dtype=np.float64) - config.column_offset) / config.columns
    )
    elevation = (1.0 - np.asarray(v, dtype=np.float64) / config.rows) * config.fov_rad - np.radians(
        config.fov_down_deg
    )
    direction = np.stack(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
        ],
        axis=-1,
    )
    return direction * np.asarray(distance, dtype=np.float64)[..., None]


def range_image_points(ranges: np.ndarray, config: RangeImageConfig) -> np.ndarray:
    """[K, 3] LiDAR-frame points at the centres of the pixels of a range image ([H, W],
    0 = empty) that hold a return, in row-major pixel order."""
    rows, cols = np.nonzero(ranges > 0)
    return points_from_coordinates(cols + 0.5, rows + 0.5, ranges[rows, cols], config)
