"""2D semantic labels from class-agnostic masks voted by LiDAR-segmentation points.

For every keyframe camera image: a mask source (``mask_sources``) cuts the image into
segments, the semantic targets of a vote source (the keyframe lidarseg points projected into
the image, or any other :class:`PixelTargets` with classes) vote for each segment's class
(``mask_voting``), and the result is written as ``<out>/<CAM>/<image stem>.npz`` with
``labels`` (uint8 [H, W], Occ3D class, ``ignore_index`` = unlabelled) and ``confidence``
(float32 [H, W], the purity of the pixel's segment, 0 = unlabelled), plus
``<out>/manifest.json`` recording the settings. See docs/sam_labels.md.

The files plug in as a render-target source through :class:`SemanticLabelSource`, and
:func:`label_quality` measures them against an exact per-pixel truth (the synthetic oracle).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from renderlss.geometry import pixel_grid
from renderlss.io import atomic_save_npz, load_image_pair
from renderlss.labels.artifacts import output_path, shard_indices, write_or_check_manifest
from renderlss.labels.mask_sources import MaskSource
from renderlss.labels.mask_voting import vote_labels
from renderlss.labels.pixel_targets import PixelTargets
from renderlss.labels.sources import TargetSource

SEMANTIC_LABEL_FORMAT = "renderlss-semantic-labels"
SEMANTIC_LABEL_VERSION = 1


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


@dataclass
class LabelSettings:
    """How votes decide a segment's class (see ``mask_voting``)."""

    min_votes: float = 3.0  # summed voter confidence (= point count for LiDAR) per segment
    min_purity: float = 0.7  # winner's share of the votes

    def validate(self) -> None:
        if self.min_votes < 0:
            raise ValueError(f"min_votes must be >= 0, got {self.min_votes}")
        if not 0 <= self.min_purity <= 1:
            raise ValueError(f"min_purity must be in [0, 1], got {self.min_purity}")


def image_size(cam_info: dict, where: str) -> tuple[int, int]:
    """(H, W) of a camera image from its info record."""
    try:
        size = int(cam_info["height"]), int(cam_info["width"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: no valid 'width'/'height' in the info ({err!r})") from err
    if min(size) <= 0:
        raise ValueError(
            f"{where}: image size {size[1]}x{size[0]} in the info (BEVDet infos do not record "
            "it: rebuild them with tools/create_data.py)"
        )
    return size


def image_labels(
    segments: np.ndarray,
    voters: PixelTargets,
    num_classes: int,
    ignore_index: int,
    settings: LabelSettings,
    where: str,
) -> SemanticLabels:
    """Labels of one image; refuses an image without a single labelled voter (e.g. a sample
    without lidarseg), which would otherwise come out silently all-ignored."""
    if not np.any(voters.semantics != ignore_index):
        raise ValueError(f"{where}: no labelled points to vote with (no lidarseg?)")
    labels, confidence = vote_labels(
        segments,
        voters,
        num_classes,
        ignore_index,
        settings.min_votes,
        settings.min_purity,
        where,
    )
    return SemanticLabels(labels, confidence)


@dataclass
class BuildSummary:
    """Outcome of :func:`build_semantic_labels`."""

    keyframes: int = 0  # keyframes of this shard
    done: int = 0  # images written
    skipped: int = 0  # images already finished
    failed: list[str] = field(default_factory=list)  # one reason per failed image
    labelled_fraction: float = 0.0  # mean share of labelled pixels over written images
    seconds: float = 0.0

    def format(self) -> str:
        lines = [
            f"{self.keyframes} keyframes: {self.done} images written, {self.skipped} skipped "
            f"(already done), {len(self.failed)} failed, {self.seconds:.1f} s"
        ]
        if self.done:
            lines.append(f"  labelled pixels per written image: {self.labelled_fraction:.1%}")
        lines += [f"  failed: {reason}" for reason in self.failed]
        return "\n".join(lines)


def build_semantic_labels(
    infos: list[dict],
    dataroot: str | Path,
    out_dir: str | Path,
    cameras: list[str],
    mask_source: MaskSource,
    vote_source: TargetSource,
    manifest: dict,
    class_names: list[str],
    ignore_index: int,
    settings: LabelSettings,
    shard: tuple[int, int] = (0, 1),
    show_progress: bool = True,
) -> BuildSummary:
    """Write the labels of every camera image of the shard's keyframes.

    Finished files are skipped (resume by rerunning). A keyframe whose voters cannot be read
    fails all its pending images; an image whose masks fail (unreadable or mismatched mask
    file) fails alone; every failure is listed in the summary and the run goes on.

    Args:
        manifest: what else decides the labels (e.g. the vote source's parameters); stored
            with the mask source's and voting settings in ``<out>/manifest.json``, and a
            folder built with other settings is refused.
    """
    start = time.perf_counter()
    settings.validate()
    out_dir = Path(out_dir)
    write_or_check_manifest(
        out_dir,
        dict(
            format=SEMANTIC_LABEL_FORMAT,
            version=SEMANTIC_LABEL_VERSION,
            cameras=cameras,
            config=dict(
                masks=mask_source.settings(),
                min_votes=settings.min_votes,
                min_purity=settings.min_purity,
                class_names=class_names,
                ignore_index=ignore_index,
                **manifest,
            ),
        ),
    )
    summary = BuildSummary()
    indices = shard_indices(len(infos), shard)
    summary.keyframes = len(indices)
    labelled = 0.0
    for index in tqdm(indices, desc="semantic labels", unit="keyframe", disable=not show_progress):
        info = infos[index]
        what = f"sample {info.get('token', index)}"
        try:
            pending = [
                cam
                for cam in cameras
                if not output_path(out_dir, cam, info["cams"][cam]["data_path"]).is_file()
            ]
        except KeyError as err:
            summary.failed.append(f"{what}: field {err} missing")
            continue
        summary.skipped += len(cameras) - len(pending)
        if not pending:
            continue
        try:
            voters = vote_source(info, pending)
        except KeyError as err:
            summary.failed += [f"{what} {cam}: field {err} missing" for cam in pending]
            continue
        except (OSError, ValueError) as err:
            summary.failed += [f"{what} {cam}: {err}" for cam in pending]
            continue
        for cam in pending:
            cam_info = info["cams"][cam]
            where = f"{what} {cam}"
            try:
                size = image_size(cam_info, where)
                segments = mask_source(cam, Path(dataroot) / cam_info["data_path"], size)
                labels = image_labels(
                    segments, voters[cam], len(class_names), ignore_index, settings, where
                )
            except (OSError, ValueError) as err:
                summary.failed.append(f"{where}: {err}")
                continue
            save_semantic_labels(output_path(out_dir, cam, cam_info["data_path"]), labels)
            summary.done += 1
            labelled += float(np.mean(labels.labels != ignore_index))
    summary.labelled_fraction = labelled / max(summary.done, 1)
    summary.seconds = time.perf_counter() - start
    return summary


# ---------------------------------------------------------------------------------------------
# Quality against an exact per-pixel truth


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
    predicted = labelled.sum(0)
    present = confusion[:num_classes].sum(1) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        class_accuracy = np.where(present, hits / true_labelled, np.nan)
        iou = np.where(present, hits / (true_labelled + predicted - hits), np.nan)
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

    Reads ``<oracle_dir>/<CAM>/<image stem>.npz`` (key ``semantics``, uint8 [H, W],
    ``ignore_index`` where the truth has no class) for every image that has a label file.

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
            oracle_path = output_path(oracle_dir, cam, data_path)
            try:
                with np.load(oracle_path) as data:
                    truth = data["semantics"]
            except (OSError, KeyError, ValueError) as err:
                raise ValueError(f"{oracle_path}: no readable 'semantics' ({err!r})") from err
            labels = load_semantic_labels(output_path(label_dir, cam, data_path)).labels
            if labels.shape != truth.shape:
                raise ValueError(f"{oracle_path}: size {truth.shape} differs from the labels")
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
