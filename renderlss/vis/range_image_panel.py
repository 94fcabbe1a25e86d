"""A LiDAR sweep as a picture: its spherical range image (one row per laser, azimuth across)
with the range colour-mapped and, where lidarseg labels exist, the class of each return.

The arrays come from ``renderlss.labels.range_image``; this module only draws them. The
image is a few dozen rows high and a thousand columns wide, so rows are stretched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from renderlss.vis.colormaps import depth_to_rgb, labels_to_rgb
from renderlss.vis.panels import (
    class_legend,
    colour_bar,
    default_font_size,
    load_font,
    resize_nearest,
    stack_vertical,
    titled_row,
)


def stretched_rows(rgb: np.ndarray, row_scale: int) -> np.ndarray:
    """[H, W, 3] -> [H * row_scale, W, 3], every row repeated."""
    return resize_nearest(rgb, rgb.shape[0] * row_scale, rgb.shape[1])


def range_image_panel(
    ranges: np.ndarray,
    max_range: float,
    *,
    classes: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    ignore_index: int = 255,
    row_scale: int = 4,
    caption: str = "LiDAR range image",
) -> np.ndarray:
    """Range (and class) tiles of one sweep's range image over their colour bar and legend.

    Args:
        ranges: [H, W] metres, 0 where no return (drawn black).
        max_range: metres at the far end of the colour map (near is 0).
        classes: [H, W] class indices of the returns (``ignore_index`` where none or
            unlabelled), or None for a sweep without labels.
        class_names: names of the class indices (``labels_to_rgb``'s convention).
    Returns:
        [h, W, 3] uint8.
    """
    ranges = np.asarray(ranges)
    if ranges.ndim != 2:
        raise ValueError(f"ranges: expected a [H, W] range image, got shape {ranges.shape}")
    if classes is not None and np.shape(classes) != ranges.shape:
        raise ValueError(f"classes: shape {np.shape(classes)} differs from ranges {ranges.shape}")
    width = ranges.shape[1]
    font = load_font(default_font_size(ranges.shape[0] * row_scale * 2))
    tiles = [
        titled_row(
            [stretched_rows(depth_to_rgb(ranges, 0.0, max_range), row_scale)],
            [f"{caption}: range"],
            font,
        ),
        colour_bar(
            lambda r: depth_to_rgb(r, 0.0, max_range), 0.0, max_range, width, "range [m]", font
        ),
    ]
    if classes is not None:
        shown = labels_to_rgb(classes, class_names, ignore_index, field="classes")
        tiles.append(
            titled_row([stretched_rows(shown, row_scale)], [f"{caption}: lidarseg class"], font)
        )
        present = np.unique(classes[(classes != ignore_index) & (ranges > 0)])
        tiles.append(class_legend(present.tolist(), class_names, width, font, ignore_index))
    return stack_vertical(tiles, 4)
