"""How well hidden points are removed, LiDAR side and camera side, against the synthetic
oracle's exact depth.

Each keyframe's sweeps are accumulated once per LiDAR-side variant (none, or a
:class:`LidarVisibilityConfig`); every camera image of it is then z-buffered with and
without the camera-side quadrant filter and compared with the oracle. A pixel is **hidden**
when its depth lies more than 10 % behind the true depth (a point of a surface the camera
cannot see), **good** when it is within 10 %. The share of hidden pixels removed, and of
good pixels lost, is counted against the plain z-buffer of the same keyframes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from renderlss.labels.dense_depth import (
    DenseDepthConfig,
    accumulate_keyframe,
    camera_dense_depth,
    group_by_scene,
    scene_context,
)
from renderlss.labels.depth_quality import OUTLIER_RELATIVE_ERROR, DepthErrorSums
from renderlss.labels.visibility import LidarVisibilityConfig
from renderlss.records.files import output_path
from renderlss.records.oracle import ground_truth_folder, load_ground_truth


@dataclasses.dataclass
class HiddenPixelSums:
    """Depth errors plus hidden / good pixel counts of one configuration (add over images)."""

    errors: DepthErrorSums = dataclasses.field(default_factory=DepthErrorSums)
    hidden: int = 0  # depth > truth * (1 + OUTLIER_RELATIVE_ERROR)
    good: int = 0  # |depth - truth| <= OUTLIER_RELATIVE_ERROR * truth

    def add(self, depth: np.ndarray, truth: np.ndarray) -> None:
        """One image: ``depth`` and ``truth`` [H, W] camera z, 0 = none / sky."""
        self.errors.add(depth, truth, np.ones(depth.shape, dtype=bool))
        both = (depth > 0) & (truth > 0)
        relative = (depth[both] - truth[both]) / truth[both]
        self.hidden += int((relative > OUTLIER_RELATIVE_ERROR).sum())
        self.good += int((np.abs(relative) <= OUTLIER_RELATIVE_ERROR).sum())


def hidden_removal_metrics(sums: HiddenPixelSums, plain: HiddenPixelSums) -> dict[str, float]:
    """Coverage, AbsRel, outlier rate, and the share of the plain z-buffer's hidden pixels
    removed and of its good pixels lost."""
    metrics = sums.errors.metrics()
    del metrics["pixels_per_image_on_sky"]
    return dict(
        **metrics,
        hidden_removed=1.0 - sums.hidden / max(plain.hidden, 1),
        good_lost=1.0 - sums.good / max(plain.good, 1),
    )


def evaluate_lidar_visibility(
    infos: list[dict],
    dataroot: str | Path,
    base: DenseDepthConfig,
    variants: dict[str, LidarVisibilityConfig | None],
    cameras: list[str],
    show_progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Metrics of every LiDAR-side variant, without and with the camera-side filter.

    Args:
        base: the builder configuration (its ``visibility`` and ``complete`` are overridden:
            completion off, the camera-side filter off and on).
        variants: ``{name: LiDAR-side test or None}``; None is the accumulation of today.
    Returns:
        ``{"<variant>" / "<variant> + quadrant filter": {coverage, abs_rel, outlier_rate,
        hidden_removed, good_lost, lidar_hidden_points, seconds_per_keyframe}}``; the shares
        are relative to the first variant without the camera filter.
    """
    truth_dir = ground_truth_folder(dataroot, "")
    if truth_dir is None:
        raise FileNotFoundError(f"{dataroot}: no oracle/ folder")
    scenes = group_by_scene(infos)
    sums: dict[str, HiddenPixelSums] = {}
    removed_points: dict[str, int] = {}
    seconds: dict[str, float] = {}
    variant_configs = {
        name: dataclasses.replace(base, lidar_visibility=test or LidarVisibilityConfig())
        for name, test in variants.items()
    }
    for name in variants:
        removed_points[name], seconds[name] = 0, 0.0
        context_scene, context = None, None
        for info in tqdm(infos, desc=name, unit="keyframe", disable=not show_progress):
            scene = info.get("scene_token") or info.get("scene_name", "")
            if scene != context_scene:
                context_scene, context = scene, scene_context(scenes[scene])
            start = time.perf_counter()
            cloud = accumulate_keyframe(info, context, dataroot, variant_configs[name])
            seconds[name] += time.perf_counter() - start
            removed_points[name] += cloud.lidar_hidden_points
            for cam in cameras:
                where = f"sample {info['token']} {cam}"
                cam_info = info["cams"][cam]
                truth, _ = load_ground_truth(
                    output_path(truth_dir, cam, cam_info["data_path"]), where
                )
                for camera_filter in (False, True):
                    config = dataclasses.replace(base, visibility=camera_filter, complete=False)
                    depth, _, _ = camera_dense_depth(cloud, context.tracks, cam_info, config, where)
                    row = f"{name} + quadrant filter" if camera_filter else name
                    sums.setdefault(row, HiddenPixelSums()).add(depth, truth)
    plain = sums[next(iter(variants))]
    keyframes = max(len(infos), 1)
    results = {}
    for row, row_sums in sums.items():
        variant = row.removesuffix(" + quadrant filter")
        results[row] = dict(
            **hidden_removal_metrics(row_sums, plain),
            lidar_hidden_points=removed_points[variant] / keyframes,
            seconds_per_keyframe=seconds[variant] / keyframes,
        )
    return results


def format_hidden_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table of :func:`evaluate_lidar_visibility` results."""
    lines = [
        "| configuration | coverage | AbsRel | >10 % off | hidden removed | good lost "
        "| LiDAR-hidden points / keyframe | accumulation s / keyframe |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        lines.append(
            f"| {name} | {m['coverage']:.1%} | {m['abs_rel']:.4f} | {m['outlier_rate']:.2%} "
            f"| {m['hidden_removed']:.1%} | {m['good_lost']:.1%} "
            f"| {m['lidar_hidden_points']:.0f} | {m['seconds_per_keyframe']:.2f} |"
        )
    return "\n".join(lines)
