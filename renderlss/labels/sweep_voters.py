"""Voters for the 2D label builder from all LiDAR sweeps around a keyframe, not only its own.

The sweeps of the dense depth window are accumulated with moving objects on their boxes, the
unlabelled ones get classes by KNN transfer from the labelled keyframe sweeps
(``label_transfer``), and each camera sees the nearest kept point per pixel with hidden
points removed (``dense_depth``): many more votes per mask than the keyframe sweep's points.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from renderlss.configuration import to_dict
from renderlss.labels.dense_depth import (
    DenseDepthConfig,
    SceneContext,
    group_by_scene,
    keyframe_dense_targets,
    scene_context,
)
from renderlss.labels.label_transfer import PointClasses
from renderlss.targets.pixel_targets import PixelTargets


def class_image_targets(
    depth: np.ndarray, classes: np.ndarray, confidence: np.ndarray, ignore_index: int
) -> PixelTargets:
    """Targets at the pixel centres of every classed pixel of [H, W] ``classes`` (uint8), with
    its ``depth`` [H, W] and its class ``confidence`` [H, W] as vote weight."""
    rows, cols = np.nonzero(classes != ignore_index)
    return PixelTargets(
        uv=np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float64),
        depth=depth[rows, cols].astype(np.float32),
        semantics=classes[rows, cols],
        confidence=confidence[rows, cols].astype(np.float32),
    )


class TransferredVoterSource:
    """Class targets of the accumulated, label-transferred sweeps (a ``TargetSource``).

    Args:
        infos: all keyframe infos the source will be asked about (their scenes give the
            LiDAR timelines and box tracks).
        dataroot: root that relative info paths are resolved against.
        point_classes: the lidarseg -> Occ3D class mapping.
        config: accumulation, visibility and transfer settings; ``downscale`` and
            ``complete`` are overridden (voters live at full resolution, measured only).
    """

    def __init__(
        self,
        infos: list[dict],
        dataroot: str | Path,
        point_classes: PointClasses,
        config: DenseDepthConfig,
    ) -> None:
        self.scenes = group_by_scene(infos)
        self.dataroot = Path(dataroot)
        self.point_classes = point_classes
        self.config = dataclasses.replace(config, transfer_labels=True, downscale=1, complete=False)
        self.config.validate("votes")
        self.context: tuple[str, SceneContext] | None = None

    def manifest(self) -> dict:
        """What decides the voters, for the label folder's manifest."""
        return dict(source="transferred sweep labels", **to_dict(self.config))

    def scene(self, info: dict) -> SceneContext:
        """The (cached) context of the info's scene: keyframes come scene by scene."""
        scene = info.get("scene_token") or info.get("scene_name", "")
        if self.context is None or self.context[0] != scene:
            self.context = (scene, scene_context(self.scenes[scene]))
        return self.context[1]

    def __call__(self, info: dict, cameras: list[str]) -> dict[str, PixelTargets]:
        targets = {}
        for cam, depth, _, classes, _ in keyframe_dense_targets(
            info, self.scene(info), self.dataroot, self.config, cameras, self.point_classes
        ):
            targets[cam] = class_image_targets(depth, *classes, self.point_classes.ignore_index)
        return targets
