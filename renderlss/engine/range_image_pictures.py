"""The range-image picture of a keyframe's LiDAR sweep (``tools/visualize.py --range-image``):
the sweep projected by ``renderlss.labels.range_image`` with the geometry of the dataroot's
LiDAR, coloured by range and, where the sample has lidarseg labels, by class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderlss.data.classes import ClassesConfig, learning_map_table
from renderlss.labels.range_image import range_image
from renderlss.synthetic.lidar_range_image import dataroot_range_image_config
from renderlss.targets.lidar import load_lidar_points, load_lidarseg_labels
from renderlss.vis.range_image_panel import range_image_panel


def sweep_range_picture(
    info: dict, dataroot: str | Path, classes: ClassesConfig, max_range: float
) -> np.ndarray:
    """[h, W, 3] uint8 picture of the keyframe sweep of ``info`` (classes: Occ3D names)."""
    dataroot = Path(dataroot)
    points = load_lidar_points(dataroot / info["lidar_path"])
    image = range_image(points[:, :3], dataroot_range_image_config(dataroot))
    pixel_classes = None
    if info.get("lidarseg_path"):
        raw = load_lidarseg_labels(dataroot / info["lidarseg_path"], len(points))
        point_classes = learning_map_table(classes)[raw]
        pixel_classes = np.where(
            image.index >= 0, point_classes[np.maximum(image.index, 0)], classes.ignore_index
        )
    return range_image_panel(
        image.range,
        max_range,
        classes=pixel_classes,
        class_names=classes.occ_class_names,
        ignore_index=classes.ignore_index,
        caption=f"sample {info['token']} {Path(info['lidar_path']).name}",
    )
