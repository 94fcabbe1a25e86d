"""Quality of dense depth against the synthetic world's exact oracle.

The oracle (``<dataroot>/oracle/<CAM>/<image stem>.npz``, docs/synthetic.md) holds the true
camera-z depth and class of every keyframe pixel. Each builder configuration of
:data:`ABLATIONS` is run in memory on the same keyframes and compared with it: coverage of
the non-sky pixels, AbsRel, and the share of pixels off by more than 10 %, over all pixels
and over pixels whose true class is dynamic (where ghosts of moving objects show).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from renderlss.labels.dense_depth import (
    DenseDepthConfig,
    group_by_scene,
    keyframe_dense_depth,
    scene_context,
)
from renderlss.records.files import output_path
from renderlss.records.oracle import ground_truth_folder, load_ground_truth

# (name, overrides of the full configuration): single sweep, accumulation, + moving objects,
# + hidden-point removal, + completion.
ABLATIONS = (
    ("a single sweep", dict(window_sweeps=0, dynamic=False, visibility=False, complete=False)),
    ("b accumulated, static", dict(dynamic=False, visibility=False, complete=False)),
    ("c + dynamic objects", dict(dynamic=True, visibility=False, complete=False)),
    ("d + visibility filter", dict(dynamic=True, visibility=True, complete=False)),
    ("e + completion", dict(dynamic=True, visibility=True, complete=True)),
)
OUTLIER_RELATIVE_ERROR = 0.1


def sample_at_output(image: np.ndarray, downscale: int) -> np.ndarray:
    """The full-resolution pixel under each output pixel's centre (the lower-right one of the
    central four for even downscales)."""
    return image[downscale // 2 :: downscale, downscale // 2 :: downscale]


@dataclasses.dataclass
class DepthErrorSums:
    """Counts and sums from which coverage and errors are finished (add over images)."""

    truth_pixels: int = 0  # non-sky oracle pixels
    measured: int = 0  # of those, with depth
    abs_rel_sum: float = 0.0
    outliers: int = 0
    on_sky: int = 0  # depth where the oracle sees sky

    def add(self, depth: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> None:
        """Accumulate one image: ``depth`` and ``truth`` [H, W] (0 = none), ``mask`` [H, W]
        bool selecting the pixels that count."""
        has_truth = mask & (truth > 0)
        both = has_truth & (depth > 0)
        relative = np.abs(depth[both] - truth[both]) / truth[both]
        self.truth_pixels += int(has_truth.sum())
        self.measured += int(both.sum())
        self.abs_rel_sum += float(relative.sum())
        self.outliers += int((relative > OUTLIER_RELATIVE_ERROR).sum())
        self.on_sky += int((mask & (truth <= 0) & (depth > 0)).sum())

    def metrics(self) -> dict[str, float]:
        """Coverage, AbsRel and outlier rate; the errors are NaN without a measured pixel, so
        a builder that deletes every point of a kind cannot score a perfect error there."""
        measured = self.measured if self.measured else float("nan")
        return dict(
            coverage=self.measured / max(self.truth_pixels, 1),
            abs_rel=self.abs_rel_sum / measured,
            outlier_rate=self.outliers / measured,
            pixels_per_image_on_sky=float(self.on_sky),
        )


def evaluate_against_oracle(
    infos: list[dict],
    dataroot: str | Path,
    base: DenseDepthConfig,
    cameras: list[str],
    dynamic_classes: list[int],
    show_progress: bool = True,
    ground_truth_dir: str | Path = "",
) -> dict[str, dict[str, float]]:
    """Metrics of every :data:`ABLATIONS` configuration over the given keyframes, against
    the maps of ``ground_truth_dir`` when given, else the dataroot's oracle (the dynamic
    metrics need ``semantics`` in the maps; without them no pixel counts as dynamic).

    Returns:
        ``{ablation name: {coverage, abs_rel, outlier_rate, dynamic_coverage,
        dynamic_abs_rel, dynamic_outlier_rate, seconds_per_keyframe}}``.
    """
    truth_dir = ground_truth_folder(dataroot, ground_truth_dir)
    if truth_dir is None:
        raise FileNotFoundError(f"{dataroot}: no oracle/ folder and no ground-truth folder")
    scenes = group_by_scene(infos)
    results = {}
    for name, overrides in ABLATIONS:
        config = dataclasses.replace(base, **overrides)
        config.validate("dense_depth")
        every, dynamic = DepthErrorSums(), DepthErrorSums()
        start = time.perf_counter()
        context_scene, context = None, None
        for info in tqdm(infos, desc=name, unit="keyframe", disable=not show_progress):
            scene = info.get("scene_token") or info.get("scene_name", "")
            if scene != context_scene:
                context_scene, context = scene, scene_context(scenes[scene])
            for cam, depth, _, _ in keyframe_dense_depth(info, context, dataroot, config, cameras):
                path = output_path(truth_dir, cam, info["cams"][cam]["data_path"])
                truth, semantics = load_ground_truth(path, f"sample {info['token']} {cam}")
                truth = sample_at_output(truth, config.downscale)
                every.add(depth, truth, np.ones(depth.shape, dtype=bool))
                if semantics is not None:
                    semantics = sample_at_output(semantics, config.downscale)
                    dynamic.add(depth, truth, np.isin(semantics, dynamic_classes))
        seconds = (time.perf_counter() - start) / max(len(infos), 1)
        images = max(len(infos) * len(cameras), 1)
        all_metrics = every.metrics()
        all_metrics["pixels_per_image_on_sky"] /= images
        results[name] = dict(
            **all_metrics,
            **{f"dynamic_{k}": v for k, v in dynamic.metrics().items() if "sky" not in k},
            seconds_per_keyframe=seconds,
        )
    return results


def format_quality_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table of :func:`evaluate_against_oracle` results."""
    lines = [
        "| configuration | coverage | AbsRel | >10 % off | dynamic coverage | dynamic AbsRel "
        "| dynamic >10 % off | s / keyframe |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        lines.append(
            f"| {name} | {m['coverage']:.1%} | {m['abs_rel']:.4f} | {m['outlier_rate']:.2%} "
            f"| {m['dynamic_coverage']:.1%} | {m['dynamic_abs_rel']:.4f} "
            f"| {m['dynamic_outlier_rate']:.2%} | {m['seconds_per_keyframe']:.2f} |"
        )
    return "\n".join(lines)
