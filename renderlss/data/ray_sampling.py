"""Weighted ray sampling: which of a sample's candidate target pixels become training rays.

Rare classes are drawn more often (class-balance weight), rays of adjacent keyframes less
often, and adjacent-frame rays that hit a dynamic class not at all (the object has moved
since, so the ray's target is wrong in the current frame).
"""

from __future__ import annotations

import numpy as np


def class_balance_weights(
    semantics: np.ndarray, num_classes: int, alpha: float, ignore_index: int
) -> np.ndarray:
    """Per-class weight ``exp(alpha * (max_c N_c / N_c - 1))`` from the class counts.

    Args:
        semantics: [M] uint8 classes of the candidate rays (ignore_index allowed).
        num_classes: K classes counted (class ids 0..K-1).
    Returns:
        [K] float64 weights; 1 for the most frequent class, 0 for absent classes.
    """
    valid = semantics[semantics != ignore_index]
    counts = np.bincount(valid, minlength=num_classes)[:num_classes].astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    if present.any():
        weights[present] = np.exp(alpha * (counts.max() / counts[present] - 1.0))
    return weights


def ray_weights(
    semantics: np.ndarray,
    is_adjacent: np.ndarray,
    class_weights: np.ndarray,
    dynamic: np.ndarray,
    adjacent_weight: float,
    ignore_index: int,
) -> np.ndarray:
    """Sampling weight of each candidate ray.

    Args:
        semantics: [M] uint8 ray classes; is_adjacent: [M] bool, ray from another keyframe.
        class_weights: [K] from :func:`class_balance_weights`.
        dynamic: [K] bool, classes that move.
    Returns:
        [M] float64 non-negative weights. Rays without a class weigh 1 (they still carry
        depth), scaled for adjacent frames like the others.
    """
    labelled = semantics != ignore_index
    cls = np.where(labelled, semantics, 0).astype(np.int64)
    weights = np.where(labelled, class_weights[cls], 1.0)
    weights = np.where(is_adjacent, weights * adjacent_weight, weights)
    moving = labelled & dynamic[cls] & is_adjacent
    return np.where(moving, 0.0, weights)


def draw_rays(weights: np.ndarray, num_rays: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``num_rays`` indices with probability proportional to ``weights`` [M].

    Without replacement when there are enough candidates with non-zero weight, with
    replacement otherwise, so every sample yields exactly ``num_rays`` rays.
    Raises ValueError when no candidate has a positive weight.
    """
    total = weights.sum()
    if not total > 0:
        raise ValueError("no candidate ray has a positive sampling weight")
    p = weights / total
    replace = int(np.count_nonzero(weights)) < num_rays
    return rng.choice(len(weights), size=num_rays, replace=replace, p=p)
