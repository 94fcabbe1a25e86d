"""2D semantic label files, ``<folder>/<CAM>/<image stem>.npz`` with ``labels`` (uint8
[H, W], Occ3D class, ``ignore_index`` = unlabelled) and ``confidence`` (float32 [H, W], the
purity of the pixel's segment, 0 = unlabelled), as written by the label builder
(``renderlss.labels.semantic_labels``) and read as a render-target source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderlss.geometry import pixel_grid
from renderlss.io import atomic_save_npz, load_image_pair
from renderlss.records.files import output_path
from renderlss.targets.pixel_targets import PixelTargets


@dataclass
class SemanticLabels:
    """The 2D labels of one camera image.

    Attributes:
        labels: [H, W] uint8 Occ3D class, the ignore index where unlabelled.
        confidence: [H, W] float32 in [0, 1], the purity of the pixel's segment vote.
    """

    labels: np.ndarray
    confidence: np.ndarray


def save_semantic_labels(path: str | Path, labels: SemanticLabels) -> None:
    """Write one label file atomically."""
    atomic_save_npz(
        path,
        labels=labels.labels.astype(np.uint8),
        confidence=labels.confidence.astype(np.float32),
    )


def load_semantic_labels(path: str | Path) -> SemanticLabels:
    """Read a label file written by :func:`save_semantic_labels`.

    Raises:
        FileNotFoundError: no such file. ValueError: unreadable, a missing field, or fields
            of the wrong shape, type or range, naming the file and the field.
    """
    labels, confidence = load_image_pair(path, "semantic label file", ("labels", "confidence"))
    if labels.dtype != np.uint8 or not np.issubdtype(confidence.dtype, np.floating):
        raise ValueError(
            f"{path}: expected uint8 'labels' and float 'confidence', got {labels.dtype} and "
            f"{confidence.dtype}"
        )
    confidence = confidence.astype(np.float32)
    if not np.all((confidence >= 0) & (confidence <= 1)):
        raise ValueError(f"{path}: field 'confidence' has values outside [0, 1]")
    return SemanticLabels(labels, confidence)


def semantic_label_targets(
    labels: SemanticLabels, ignore_index: int, stride: int = 1
) -> PixelTargets:
    """Class targets at the labelled pixels, depth 0 (a class-only source).

    Args:
        stride: keep every ``stride``-th row and column (1 = every labelled pixel).
    Returns:
        Targets at pixel centres with the stored class and confidence.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    height, width = labels.labels.shape
    keep = labels.labels != ignore_index
    sampled = np.zeros_like(keep)
    sampled[::stride, ::stride] = True
    rows, cols = np.nonzero(keep & sampled)
    return PixelTargets(
        uv=pixel_grid(height, width)[rows, cols],
        depth=np.zeros(len(rows), dtype=np.float32),
        semantics=labels.labels[rows, cols],
        confidence=labels.confidence[rows, cols],
    )


class SemanticLabelSource:
    """Class targets read from a semantic label folder (a :class:`TargetSource`).

    Args:
        label_dir: the builder's output folder (``<CAM>/<image stem>.npz``).
        ignore_index: the class value of unlabelled pixels.
        stride: pixel subsampling of :func:`semantic_label_targets`.
    """

    def __init__(self, label_dir: str | Path, ignore_index: int, stride: int = 1) -> None:
        self.label_dir = Path(label_dir)
        self.ignore_index = ignore_index
        self.stride = stride

    def __call__(self, info: dict, cameras: list[str]) -> dict[str, PixelTargets]:
        targets = {}
        for cam in cameras:
            cam_info = info["cams"][cam]
            path = output_path(self.label_dir, cam, cam_info["data_path"])
            labels = load_semantic_labels(path)
            size = (int(cam_info["height"]), int(cam_info["width"]))
            if labels.labels.shape != size:
                raise ValueError(
                    f"{path}: labels {labels.labels.shape} (H, W) do not match sample "
                    f"{info['token']} {cam} image size {size}"
                )
            targets[cam] = semantic_label_targets(labels, self.ignore_index, self.stride)
        return targets
