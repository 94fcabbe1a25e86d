"""Colour maps for pictures: depth in metres, signed depth error, and class colours.

All maps return uint8 RGB and paint invalid input black, so "no data" looks the same in every
picture. Tables are data sampled from well-known maps and interpolated linearly in RGB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

# viridis sampled at 17 equally spaced points: luminance rises monotonically from the first
# row to the last, and the darkest entry is still clearly distinct from the black of "no data".
VIRIDIS_TABLE = np.array(
    [
        [68, 1, 84],
        [72, 24, 106],
        [71, 45, 123],
        [66, 64, 134],
        [59, 82, 139],
        [51, 99, 141],
        [44, 114, 142],
        [38, 130, 142],
        [33, 145, 140],
        [31, 160, 136],
        [40, 174, 128],
        [63, 188, 115],
        [94, 201, 98],
        [132, 212, 75],
        [173, 220, 48],
        [216, 226, 25],
        [253, 231, 37],
    ],
    dtype=np.float64,
)

# Blue -> white -> red (RdBu reversed, sampled over its inner 80% so that the largest errors
# stay distinguishable from the black of "no data").
DIVERGING_TABLE = np.array(
    [
        [33, 102, 172],
        [67, 147, 195],
        [146, 197, 222],
        [209, 229, 240],
        [247, 247, 247],
        [253, 219, 199],
        [244, 165, 130],
        [214, 96, 77],
        [178, 24, 43],
    ],
    dtype=np.float64,
)

# Occ3D class colours as commonly drawn for Occ3D-nuScenes, except "others", which is dark grey
# here because black means "ignore" in every renderlss picture.
OCC3D_CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "others": (90, 90, 90),
    "barrier": (255, 120, 50),
    "bicycle": (255, 192, 203),
    "bus": (255, 255, 0),
    "car": (0, 150, 245),
    "construction_vehicle": (0, 255, 255),
    "motorcycle": (200, 180, 0),
    "pedestrian": (255, 0, 0),
    "traffic_cone": (255, 240, 150),
    "trailer": (135, 60, 0),
    "truck": (160, 32, 240),
    "driveable_surface": (255, 0, 255),
    "other_flat": (139, 137, 137),
    "sidewalk": (75, 0, 75),
    "terrain": (150, 240, 80),
    "manmade": (230, 230, 250),
    "vegetation": (0, 175, 0),
}
FREE_COLOUR = (255, 255, 255)
IGNORE_COLOUR = (0, 0, 0)
INVALID_COLOUR = (0, 0, 0)


def interpolate_table(table: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Colours of a table of equally spaced stops at positions ``t`` (clipped to [0, 1]).

    Args:
        table: [S, 3] RGB stops in 0..255 at t = 0, 1/(S-1), ..., 1.
        t: [...] positions.
    Returns:
        [..., 3] uint8 RGB.
    """
    t = np.clip(np.nan_to_num(np.asarray(t, dtype=np.float64), nan=0.0), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(table))
    channels = [np.interp(t, stops, table[:, c]) for c in range(3)]
    return np.round(np.stack(channels, axis=-1)).astype(np.uint8)


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """[...] bool: finite and positive (0 and NaN mark "no depth" in every depth image)."""
    depth = np.asarray(depth, dtype=np.float64)
    return np.isfinite(depth) & (depth > 0)


def depth_to_rgb(depth: np.ndarray, d_min: float, d_max: float) -> np.ndarray:
    """Depth in metres to colour: near (``d_min``) bright yellow, far (``d_max``) dark purple.

    Depths outside [d_min, d_max] take the end colours; 0, negative, NaN and inf are black.

    Args:
        depth: [...] metres.
    Returns:
        [..., 3] uint8 RGB.
    """
    if not (np.isfinite(d_min) and np.isfinite(d_max) and d_max > d_min):
        raise ValueError(f"depth_to_rgb: need finite d_min < d_max, got {d_min}, {d_max}")
    depth = np.asarray(depth, dtype=np.float64)
    valid = valid_depth(depth)
    # Near is bright so that close obstacles, the ones that matter, stand out.
    t = 1.0 - (np.where(valid, depth, d_min) - d_min) / (d_max - d_min)
    rgb = interpolate_table(VIRIDIS_TABLE, t)
    rgb[~valid] = INVALID_COLOUR
    return rgb


def signed_relative_error(target: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    """(rendered - target) / target where both depths are valid, NaN elsewhere.

    Args:
        target, rendered: [...] metres, same shape.
    Returns:
        [...] float64; negative means the rendering is too near.
    """
    target = np.asarray(target, dtype=np.float64)
    rendered = np.asarray(rendered, dtype=np.float64)
    if target.shape != rendered.shape:
        raise ValueError(
            f"signed_relative_error: rendered shape {rendered.shape} != target {target.shape}"
        )
    both = valid_depth(target) & valid_depth(rendered)
    error = np.full(target.shape, np.nan)
    error[both] = (rendered[both] - target[both]) / target[both]
    return error


def error_to_rgb(error: np.ndarray, limit: float) -> np.ndarray:
    """Signed error to a diverging colour: -limit blue, 0 white, +limit red; NaN black.

    Args:
        error: [...] signed error (e.g. relative depth error), NaN where undefined.
        limit: error magnitude drawn with the saturated end colours.
    Returns:
        [..., 3] uint8 RGB.
    """
    if not (np.isfinite(limit) and limit > 0):
        raise ValueError(f"error_to_rgb: limit must be positive, got {limit}")
    error = np.asarray(error, dtype=np.float64)
    rgb = interpolate_table(DIVERGING_TABLE, 0.5 + 0.5 * error / limit)
    rgb[np.isnan(error)] = INVALID_COLOUR
    return rgb


def class_colour(name: str) -> tuple[int, int, int]:
    """Colour of a class name: the Occ3D colour when known, otherwise a fixed colour derived
    from the name (the same in every run and on every machine, unlike ``hash``)."""
    if name in OCC3D_CLASS_COLOURS:
        return OCC3D_CLASS_COLOURS[name]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    # Mid-range channels keep the colour away from the black/white reserved for ignore/free.
    low, high = 40, 215
    r, g, b = (low + digest[i] * (high - low) // 255 for i in range(3))
    return int(r), int(g), int(b)


def label_palette(class_names: Sequence[str], ignore_index: int = 255) -> np.ndarray:
    """[256, 3] uint8 lookup table: index i < C -> colour of ``class_names[i]``, C (free) ->
    white, ``ignore_index`` -> black; the remaining entries are black and unused."""
    if len(class_names) >= 256 or not 0 <= ignore_index < 256:
        raise ValueError(
            f"label_palette: {len(class_names)} classes and ignore_index {ignore_index} "
            "do not fit uint8 labels"
        )
    if ignore_index <= len(class_names):
        raise ValueError(
            f"label_palette: ignore_index {ignore_index} collides with a class or free index"
        )
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index, name in enumerate(class_names):
        palette[index] = class_colour(name)
    palette[len(class_names)] = FREE_COLOUR
    palette[ignore_index] = IGNORE_COLOUR
    return palette


def labels_to_rgb(
    labels: np.ndarray, class_names: Sequence[str], ignore_index: int = 255, field: str = "labels"
) -> np.ndarray:
    """Class indices to colours (see ``label_palette``).

    Args:
        labels: [...] integer class indices: 0..C-1 classes, C free, ``ignore_index`` ignore.
        field: name used in the error raised for an index outside those.
    Returns:
        [..., 3] uint8 RGB.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{field}: class indices must be integers, got dtype {labels.dtype}")
    known = ((labels >= 0) & (labels <= len(class_names))) | (labels == ignore_index)
    if not np.all(known):
        bad = np.unique(labels[~known])[:5].tolist()
        raise ValueError(
            f"{field}: class indices {bad} are neither classes 0..{len(class_names) - 1}, "
            f"free ({len(class_names)}) nor ignore ({ignore_index})"
        )
    return label_palette(class_names, ignore_index)[labels.astype(np.int64)]
