"""The pictures of one evaluated sample, composed from the ``renderlss.vis`` drawing
functions: per-camera depth and semantic panels tiled over the rig, and the predicted
occupancy next to the ground truth, top-down and oblique.

Inputs are plain arrays (see ``renderlss.engine.full_image.CameraMaps`` for where they come
from); every function returns a uint8 RGB picture [H, W, 3].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from renderlss.geometry.grid import VoxelGrid
from renderlss.vis.occupancy_views import bev_view, perspective_view
from renderlss.vis.panels import (
    default_font_size,
    depth_panel,
    load_font,
    semantic_panel,
    tile_panels,
    titled_row,
)

# Camera tiles narrower than this are enlarged (by an integer factor, nearest neighbour): an
# image rendered at a coarse stride is otherwise too small to see, and too narrow for the
# tick labels of the colour bars.
MIN_TILE_WIDTH = 240


def enlarged(image: np.ndarray, min_width: int = MIN_TILE_WIDTH) -> np.ndarray:
    """[h, w, 3] repeated by the smallest integer factor that makes it ``min_width`` wide."""
    factor = max(1, math.ceil(min_width / image.shape[1]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _check_cameras(cameras: Sequence[str], **maps: Sequence) -> None:
    for name, values in maps.items():
        if len(values) != len(cameras):
            raise ValueError(f"{name}: {len(values)} maps for {len(cameras)} cameras")


def rig_depth_figure(
    cameras: Sequence[str],
    images: Sequence[np.ndarray],
    target_depths: Sequence[np.ndarray],
    rendered_depths: Sequence[np.ndarray],
    d_min: float,
    d_max: float,
    columns: int = 1,
) -> np.ndarray:
    """One ``depth_panel`` per camera (image | target | rendered | relative error, with the
    metre colour bar), tiled ``columns`` per row in the order of ``cameras``.

    Args:
        images: [h, w, 3] uint8 per camera (enlarged to ``MIN_TILE_WIDTH``; the maps are
            scaled to the image); target_depths, rendered_depths: [h', w'] metres per camera
            (0 = unknown; sparse targets are drawn as discs).
    """
    _check_cameras(cameras, images=images, targets=target_depths, rendered=rendered_depths)
    panels = [
        depth_panel(enlarged(image), target, rendered, d_min, d_max, caption=camera)
        for camera, image, target, rendered in zip(cameras, images, target_depths, rendered_depths)
    ]
    return tile_panels(panels, columns)


def rig_semantic_figure(
    cameras: Sequence[str],
    images: Sequence[np.ndarray],
    target_semantics: Sequence[np.ndarray],
    rendered_semantics: Sequence[np.ndarray],
    class_names: Sequence[str],
    ignore_index: int = 255,
    columns: int = 1,
) -> np.ndarray:
    """One ``semantic_panel`` per camera (image | target classes | rendered classes, with a
    legend of the classes present), tiled ``columns`` per row.

    Args:
        images: [h, w, 3] uint8 per camera (enlarged to ``MIN_TILE_WIDTH``).
        target_semantics, rendered_semantics: [h', w'] class indices per camera (C = free,
            ``ignore_index`` = no target).
    """
    _check_cameras(cameras, images=images, targets=target_semantics, rendered=rendered_semantics)
    panels = [
        semantic_panel(
            enlarged(image), target, rendered, class_names, ignore_index=ignore_index, caption=cam
        )
        for cam, image, target, rendered in zip(
            cameras, images, target_semantics, rendered_semantics
        )
    ]
    return tile_panels(panels, columns)


def side_by_side(tiles: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """Equal-height pictures in a row, each under its title."""
    font = load_font(default_font_size(tiles[0].shape[0]))
    return titled_row(tiles, titles, font)


def occupancy_figures(
    predicted: np.ndarray,
    ground_truth: np.ndarray,
    class_names: Sequence[str],
    grid: VoxelGrid,
    mask: np.ndarray | None = None,
    mask_name: str = "",
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted and the ground-truth volume side by side, top-down and oblique.

    Both volumes are drawn through the same ``mask`` (the voxels the metric scores), so
    the two pictures compare like the mIoU does.

    Args:
        predicted, ground_truth: [X, Y, Z] class indices, ``len(class_names)`` = free.
        mask: [X, Y, Z] bool or None; mask_name: shown in the titles (e.g. "mask_camera").
    Returns:
        (bev, perspective) pictures.
    """
    free_index = len(class_names)
    suffix = f" ({mask_name})" if mask is not None and mask_name else ""
    titles = [f"prediction{suffix}", f"ground truth{suffix}"]
    volumes = [np.asarray(predicted), np.asarray(ground_truth)]
    bev = side_by_side(
        [
            bev_view(v, free_index, class_names, grid=grid, mask=mask, ignore_index=ignore_index)
            for v in volumes
        ],
        titles,
    )
    oblique = side_by_side(
        [
            perspective_view(v, free_index, class_names, mask=mask, ignore_index=ignore_index)
            for v in volumes
        ],
        titles,
    )
    return bev, oblique
