"""Depth targets against an exact per-pixel truth (the synthetic oracle): how many lie behind
the surface the camera sees, and their error by distance.

A target "behind" the truth lies more than ``BEHIND_MARGIN`` farther than the truth at its
pixel and at each of the 8 pixels around it: a surface hidden from the camera, not a target
on a silhouette whose pixel holds both a near and a far surface.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from renderlss.eval.depth_breakdown import DISTANCE_BANDS
from renderlss.records.files import output_path
from renderlss.records.oracle import load_ground_truth
from renderlss.targets.sources import TargetSource

BEHIND_MARGIN = 0.1


def behind_truth(depth: np.ndarray, uv: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[M] bool: targets of camera z ``depth`` [M] at pixels ``uv`` [M, 2] that lie behind
    ``truth`` [H, W] (0 = unknown) at their pixel and at every pixel next to it."""
    farthest_around = cv2.dilate(truth, np.ones((3, 3), np.uint8))
    cols, rows = np.floor(uv).astype(np.int64).T
    limit = (1.0 + BEHIND_MARGIN) * np.maximum(truth[rows, cols], farthest_around[rows, cols])
    return (truth[rows, cols] > 0) & (depth > limit)


@dataclass
class TargetDepthQuality:
    """Targets with a known true depth, pooled over images."""

    target: list[np.ndarray] = field(default_factory=list)  # target camera z
    truth: list[np.ndarray] = field(default_factory=list)  # true camera z at the pixel
    behind: list[np.ndarray] = field(default_factory=list)

    def add(self, depth: np.ndarray, uv: np.ndarray, truth: np.ndarray) -> None:
        """One image's targets (``depth`` [M], pixels ``uv`` [M, 2]) against ``truth``."""
        cols, rows = np.floor(uv).astype(np.int64).T
        known = (truth[rows, cols] > 0) & (depth > 0)
        self.target.append(depth[known])
        self.truth.append(truth[rows, cols][known])
        self.behind.append(behind_truth(depth, uv, truth)[known])

    def summary(self, bands: Sequence[float] = DISTANCE_BANDS) -> dict[str, dict[str, float]]:
        """Per true-distance band and for all targets: count, share behind, AbsRel."""
        target, truth = np.concatenate(self.target), np.concatenate(self.truth)
        behind = np.concatenate(self.behind)
        groups = {"all": np.ones(len(truth), dtype=bool)}
        for low, high in zip(bands[:-1], bands[1:]):
            groups[f"{low:g}-{high:g} m"] = (truth >= low) & (truth < high)
        rows = {}
        for name, inside in groups.items():
            count = int(inside.sum())
            error = np.abs(target[inside] - truth[inside]) / truth[inside]
            rows[name] = dict(
                targets=count,
                behind=float(behind[inside].mean()) if count else 0.0,
                abs_rel=float(error.mean()) if count else 0.0,
            )
        return rows


def measure_target_depth(
    source: TargetSource, infos: Iterable[dict], cameras: list[str], truth_dir: str | Path
) -> TargetDepthQuality:
    """Every camera's targets of ``source`` for the keyframes ``infos`` against the truth
    maps of ``truth_dir`` (``<CAM>/<image stem>.npz``, the oracle's layout)."""
    quality = TargetDepthQuality()
    for info in infos:
        for cam, targets in source(info, cameras).items():
            cam_info = info["cams"][cam]
            where = f"sample {info['token']} {cam}"
            truth, _ = load_ground_truth(
                output_path(Path(truth_dir), cam, cam_info["data_path"]),
                where,
                (int(cam_info["height"]), int(cam_info["width"])),
            )
            has_depth = targets.select(targets.depth > 0)
            quality.add(has_depth.depth, has_depth.uv, truth)
    return quality
