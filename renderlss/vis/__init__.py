"""Pictures: colour maps, depth/semantic panels (rendering next to target), occupancy views,
and ``save_png`` to write any of them atomically. numpy + Pillow only, no display needed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from renderlss.io import atomic_write_bytes
from renderlss.vis.colormaps import (
    class_colour,
    depth_to_rgb,
    error_to_rgb,
    label_palette,
    labels_to_rgb,
    signed_relative_error,
)
from renderlss.vis.occupancy_views import bev_view, perspective_view
from renderlss.vis.panels import class_legend, depth_panel, semantic_panel, tile_panels


def save_png(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 picture, [H, W, 3] RGB or [H, W] grey, as PNG atomically (temp file in
    the same directory, then rename), creating the directory if needed."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    ):
        raise ValueError(
            f"{path}: save_png needs uint8 [H, W, 3] or [H, W], got {array.dtype} {array.shape}"
        )
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


__all__ = [
    "bev_view",
    "class_colour",
    "class_legend",
    "depth_panel",
    "depth_to_rgb",
    "error_to_rgb",
    "label_palette",
    "labels_to_rgb",
    "perspective_view",
    "save_png",
    "semantic_panel",
    "signed_relative_error",
    "tile_panels",
]
