"""Coverage and AbsRel of dense depth folders against the exact depth (the synthetic oracle or a
ground-truth folder), per band of true distance, per stage of the stored confidence.

A dense depth file holds the pixels of several stages told apart by their stored confidence
(docs/dense_depth.md): measured (1), the classical completion's ``filled_confidence`` and the
learned completion's lower level. :func:`stage_masks` cuts a file into cumulative stages
("accumulated", "+ classical", "+ learned"), so one file completed by every stage gives the
whole comparison; each stage's coverage counts the pixels with depth among the non-sky pixels
whose true depth lies in the band, AbsRel is over those pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderlss.labels.depth_quality import DepthErrorSums, sample_at_output
from renderlss.records.files import output_path
from renderlss.records.oracle import load_ground_truth
from renderlss.targets.dense_depth_files import CONFIDENCE_SCALE, load_dense_depth

# Bands of true camera-z depth (metres), upper bound excluded.
DISTANCE_BANDS = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, float("inf")))


def band_name(band: tuple[float, float]) -> str:
    """``"0-10 m"``, ..., ``">40 m"``."""
    low, high = band
    return f">{low:g} m" if np.isinf(high) else f"{low:g}-{high:g} m"


def stage_masks(
    confidence: np.ndarray, filled_confidence: float, learned_level: float
) -> dict[str, np.ndarray]:
    """Cumulative [H, W] bool masks of the stages of one dense depth file by stored level.

    Args:
        confidence: [H, W] float32 in [0, 1] as :func:`load_dense_depth` gives it.
        filled_confidence, learned_level: the classical and the learned stage's levels.
    """
    stored = np.round(confidence * CONFIDENCE_SCALE)
    measured = stored == CONFIDENCE_SCALE
    classical = stored == np.round(filled_confidence * CONFIDENCE_SCALE)
    learned = stored == np.round(learned_level * CONFIDENCE_SCALE)
    return {
        "accumulated": measured,
        "+ classical": measured | classical,
        "+ learned": measured | classical | learned,
        "learned pixels only": learned,
    }


def evaluate_folder_by_band(
    infos: list[dict],
    folder: str | Path,
    truth_dir: str | Path,
    cameras: list[str],
    filled_confidence: float,
    learned_level: float,
    bands: tuple[tuple[float, float], ...] = DISTANCE_BANDS,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{stage: {band name: {coverage, abs_rel, outlier_rate, pixels_per_image_on_sky}}}``
    over every keyframe camera image of ``infos`` (band "all" included). The learned-only
    stage's coverage is the share of the band that the learned stage alone fills.

    Raises:
        FileNotFoundError / ValueError: a missing or malformed dense depth or ground-truth
            file, naming the file and the sample.
    """
    named = {band_name(b): b for b in bands}
    sums: dict[str, dict[str, DepthErrorSums]] = {}
    images = 0
    for info in infos:
        for cam in cameras:
            data_path = info["cams"][cam]["data_path"]
            where = f"sample {info['token']} {cam}"
            path = output_path(folder, cam, data_path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: dense depth file missing ({where})")
            depth, confidence = load_dense_depth(path)
            truth, _ = load_ground_truth(output_path(truth_dir, cam, data_path), where)
            truth = sample_at_output(truth, truth.shape[1] // depth.shape[1])
            if truth.shape != depth.shape:
                raise ValueError(f"{path}: depth {depth.shape} does not match the truth's")
            images += 1
            # "all" also sees the sky pixels (truth 0), so depth on sky is counted there only.
            regions = {"all": np.ones(truth.shape, dtype=bool)}
            regions |= {
                n: (truth > 0) & (truth >= lo) & (truth < hi) for n, (lo, hi) in named.items()
            }
            for stage, mask in stage_masks(confidence, filled_confidence, learned_level).items():
                stage_depth = np.where(mask, depth, 0.0)
                for name, region in regions.items():
                    per_band = sums.setdefault(stage, {}).setdefault(name, DepthErrorSums())
                    per_band.add(stage_depth, truth, region)
    results = {}
    for stage, per_band in sums.items():
        results[stage] = {}
        for name, band_sums in per_band.items():
            metrics = band_sums.metrics()
            metrics["pixels_per_image_on_sky"] /= max(images, 1)
            results[stage][name] = metrics
    return results


def format_band_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table of :func:`evaluate_folder_by_band`: coverage / AbsRel per band."""
    bands = list(next(iter(results.values())))
    lines = [
        "| stage | "
        + " | ".join(f"{b} coverage | {b} AbsRel" for b in bands)
        + " | on sky / image |",
        "|---|" + "---|---|" * len(bands) + "---|",
    ]
    for stage, per_band in results.items():
        cells = [f"{per_band[b]['coverage']:.1%} | {per_band[b]['abs_rel']:.4f}" for b in bands]
        sky = per_band["all"]["pixels_per_image_on_sky"]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {sky:.0f} |")
    return "\n".join(lines)
