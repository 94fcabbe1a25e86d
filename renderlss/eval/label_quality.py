"""Quality of 2D semantic labels against an exact per-pixel truth (the synthetic oracle):
coverage, accuracy and IoU of the label files and of their voters alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from renderlss.eval.metrics import iou_from_confusion
from renderlss.records.files import output_path
from renderlss.records.oracle import load_oracle
from renderlss.targets.pixel_targets import PixelTargets
from renderlss.targets.semantic_label_files import load_semantic_labels
from renderlss.targets.sources import TargetSource


def targets_label_image(
    targets: PixelTargets, size: tuple[int, int], ignore_index: int
) -> np.ndarray:
    """[H, W] uint8 label image with the class of each target at its pixel (one target per
    pixel, as the LiDAR z-buffer gives), ``ignore_index`` elsewhere."""
    image = np.full(size, ignore_index, dtype=np.uint8)
    cols = np.floor(targets.uv[:, 0]).astype(np.int64)
    rows = np.floor(targets.uv[:, 1]).astype(np.int64)
    image[rows, cols] = targets.semantics
    return image


def accumulate_confusion(
    confusion: np.ndarray, predicted: np.ndarray, truth: np.ndarray, ignore_index: int
) -> None:
    """Add one image to a [C + 1, C + 1] confusion (in place).

    Rows are the true class with row C for pixels whose truth is ``ignore_index`` (sky in the
    synthetic oracle); columns the predicted class with column C for unlabelled pixels. A
    label on a sky pixel is therefore counted as an error, never dropped.
    """
    num_classes = confusion.shape[0] - 1
    rows = np.where(truth == ignore_index, num_classes, truth).astype(np.int64)
    cols = np.where(predicted == ignore_index, num_classes, predicted).astype(np.int64)
    if rows.max(initial=0) > num_classes or cols.max(initial=0) > num_classes:
        raise ValueError(f"classes beyond {num_classes - 1} in the labels or the truth")
    confusion += np.bincount(
        (rows * (num_classes + 1) + cols).ravel(), minlength=(num_classes + 1) ** 2
    ).reshape(num_classes + 1, num_classes + 1)


def quality_metrics(confusion: np.ndarray) -> dict:
    """Coverage, accuracy and IoU of a [C + 1, C + 1] confusion (:func:`accumulate_confusion`).

    Returns:
        coverage (labelled pixels / all pixels), class_coverage (the same among pixels whose
        truth has a class), accuracy (correct / labelled), per-class
        ``accuracy`` (correct / labelled pixels of that true class) and ``iou`` among the
        labelled pixels (NaN for classes absent from the truth), and ``miou`` (their mean).
        Unlabelled pixels lower the coverage, not the accuracy or the IoU.
    """
    num_classes = confusion.shape[0] - 1
    labelled = confusion[:, :num_classes]  # [C + 1, C]
    hits = np.diag(confusion)[:num_classes].astype(np.float64)
    true_labelled = labelled[:num_classes].sum(1)
    present = confusion[:num_classes].sum(1) > 0
    # Unlabelled pixels (column C) are neither hits nor false positives.
    labelled_only = np.pad(labelled, ((0, 0), (0, 1)))
    iou_all = iou_from_confusion(torch.from_numpy(labelled_only)).numpy()[:num_classes]
    with np.errstate(invalid="ignore", divide="ignore"):
        class_accuracy = np.where(present, hits / true_labelled, np.nan)
    iou = np.where(present, iou_all, np.nan)
    total, with_class = confusion.sum(), confusion[:num_classes].sum()
    return dict(
        coverage=labelled.sum() / total if total else 0.0,
        class_coverage=true_labelled.sum() / with_class if with_class else 0.0,
        accuracy=hits.sum() / labelled.sum() if labelled.sum() else 0.0,
        class_accuracy=class_accuracy,
        iou=iou,
        miou=float(np.nanmean(iou)) if present.any() else float("nan"),
    )


def label_quality(
    infos: list[dict],
    label_dir: str | Path,
    oracle_dir: str | Path,
    cameras: list[str],
    vote_source: TargetSource,
    num_classes: int,
    ignore_index: int,
) -> dict[str, np.ndarray]:
    """Confusions of the label files and of the voters alone against the oracle.

    Reads the oracle ``<oracle_dir>/<CAM>/<image stem>.npz`` of every image that has a label
    file; its sky value must be ``ignore_index`` (both are 255).

    Returns:
        ``{"masks + votes": confusion, "points alone": confusion}``, each [C + 1, C + 1].
    """
    confusions = {
        name: np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
        for name in ("masks + votes", "points alone")
    }
    for info in infos:
        present = [
            cam
            for cam in cameras
            if output_path(label_dir, cam, info["cams"][cam]["data_path"]).is_file()
        ]
        voters = vote_source(info, present) if present else {}
        for cam in present:
            data_path = info["cams"][cam]["data_path"]
            labels = load_semantic_labels(output_path(label_dir, cam, data_path)).labels
            where = f"sample {info['token']} {cam}"
            _, truth = load_oracle(output_path(oracle_dir, cam, data_path), where, labels.shape)
            points = targets_label_image(voters[cam], truth.shape, ignore_index)
            accumulate_confusion(confusions["masks + votes"], labels, truth, ignore_index)
            accumulate_confusion(confusions["points alone"], points, truth, ignore_index)
    return confusions


def quality_table(confusions: dict[str, np.ndarray], class_names: list[str]) -> str:
    """Markdown table: coverage, accuracy, mIoU and per-class IoU of each confusion."""
    metrics = {name: quality_metrics(confusion) for name, confusion in confusions.items()}
    names = list(metrics)
    lines = [
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| pixel coverage | " + " | ".join(f"{metrics[n]['coverage']:.2%}" for n in names) + " |",
        "| coverage of pixels with a class | "
        + " | ".join(f"{metrics[n]['class_coverage']:.2%}" for n in names)
        + " |",
        "| pixel accuracy | " + " | ".join(f"{metrics[n]['accuracy']:.2%}" for n in names) + " |",
        "| mIoU (labelled pixels) | "
        + " | ".join(f"{100 * metrics[n]['miou']:.1f}" for n in names)
        + " |",
    ]
    for c, class_name in enumerate(class_names):
        if np.isnan(metrics[names[0]]["iou"][c]):
            continue
        cells = [
            f"{100 * metrics[n]['iou'][c]:.1f} / {100 * metrics[n]['class_accuracy'][c]:.1f}"
            for n in names
        ]
        lines.append(f"| {class_name} IoU / acc | " + " | ".join(cells) + " |")
    return "\n".join(lines)
