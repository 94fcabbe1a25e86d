"""Label class-agnostic masks by the votes of the semantic targets that fall inside them.

Any :class:`PixelTargets` with classes can vote (projected keyframe lidarseg points, or points
accumulated over several sweeps). Each target votes for its class in the segment holding its
pixel, with its confidence as weight. A segment takes the winning class when the total weight
reaches ``min_votes`` and the winner's share of it (the *purity*) reaches ``min_purity``; a
tie between the two strongest classes, too few votes or too low a purity leave the segment
at the ignore index: a mask that straddles two objects is dropped rather than guessed.
"""

from __future__ import annotations

import numpy as np

from renderlss.labels.mask_sources import NO_SEGMENT
from renderlss.targets.pixel_targets import PixelTargets


def target_pixel_index(uv: np.ndarray, height: int, width: int, where: str) -> np.ndarray:
    """[M] flat pixel index ``row * width + col`` of [M, 2] image coordinates (floor)."""
    cols = np.floor(uv[:, 0]).astype(np.int64)
    rows = np.floor(uv[:, 1]).astype(np.int64)
    outside = (cols < 0) | (cols >= width) | (rows < 0) | (rows >= height)
    if np.any(outside):
        u, v = uv[np.argmax(outside)]
        raise ValueError(
            f"{where}: {int(outside.sum())} targets outside the {width}x{height} image "
            f"(first at u={u:.1f}, v={v:.1f})"
        )
    return rows * width + cols


def segment_votes(
    segments: np.ndarray,
    targets: PixelTargets,
    num_classes: int,
    ignore_index: int,
    where: str = "votes",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-segment class votes.

    Args:
        segments: [H, W] int32 segment image (-1 = no mask).
        targets: M targets with classes in 0..num_classes-1 or ``ignore_index`` (no vote).
    Returns:
        segment_ids [S] (the distinct values of ``segments``, ascending), votes [S, C]
        float64 summed confidences per class, and the [H, W] index into segment_ids of
        every pixel.
    """
    height, width = segments.shape
    segment_ids, pixel_segment = np.unique(segments, return_inverse=True)
    pixel_segment = pixel_segment.reshape(height, width)
    classes = targets.semantics.astype(np.int64)
    labelled = classes != ignore_index
    bad = labelled & (classes >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"{where}: target classes {sorted(set(classes[bad].tolist()))} are neither "
            f"0..{num_classes - 1} nor the ignore index {ignore_index}"
        )
    pixels = target_pixel_index(targets.uv[labelled], height, width, where)
    voter_segment = pixel_segment.ravel()[pixels]
    votes = np.bincount(
        voter_segment * num_classes + classes[labelled],
        weights=targets.confidence[labelled].astype(np.float64),
        minlength=len(segment_ids) * num_classes,
    ).reshape(len(segment_ids), num_classes)
    return segment_ids, votes, pixel_segment


def decide_classes(
    votes: np.ndarray, min_votes: float, min_purity: float, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class and purity of each segment from its votes.

    Args:
        votes: [S, C] non-negative vote weights.
    Returns:
        classes [S] uint8 (``ignore_index`` where the total is below ``min_votes``, the purity
        below ``min_purity``, or the two strongest classes tie) and purity [S] float32 (the
        winner's share of the total; 0 where ignored).
    """
    total = votes.sum(1)
    ranked = np.sort(votes, axis=1)
    best = ranked[:, -1]
    runner_up = ranked[:, -2] if votes.shape[1] > 1 else np.zeros(len(votes))
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(total > 0, best / total, 0.0)
    keep = (total >= min_votes) & (purity >= min_purity) & (best > runner_up)
    classes = np.where(keep, votes.argmax(1), ignore_index).astype(np.uint8)
    return classes, np.where(keep, purity, 0.0).astype(np.float32)


def vote_labels(
    segments: np.ndarray,
    targets: PixelTargets,
    num_classes: int,
    ignore_index: int,
    min_votes: float,
    min_purity: float,
    where: str = "votes",
) -> tuple[np.ndarray, np.ndarray]:
    """Label image of a segment image voted by ``targets`` (see the module docstring).

    Args:
        segments: [H, W] int32 segment image, -1 = no mask (such pixels stay ignored).
        targets: the voters, in the image's own pixel coordinates.
        where: names the image in errors.
    Returns:
        labels [H, W] uint8 (``ignore_index`` where unlabelled) and confidence [H, W]
        float32 (the purity of the pixel's segment, 0 where unlabelled).
    """
    if segments.ndim != 2:
        raise ValueError(f"{where}: segment image must be [H, W], got shape {segments.shape}")
    segment_ids, votes, pixel_segment = segment_votes(
        segments, targets, num_classes, ignore_index, where
    )
    classes, purity = decide_classes(votes, min_votes, min_purity, ignore_index)
    no_mask = segment_ids == NO_SEGMENT
    classes[no_mask], purity[no_mask] = ignore_index, 0.0
    return classes[pixel_segment], purity[pixel_segment]
