"""RenderOcc's exponential class balance, the one formula behind the class-balanced ray
sampling (``data.targets.class_balance_alpha``) and the class-weighted losses
(``model.loss.class_weight_alpha``)."""

from __future__ import annotations

import math

import numpy as np


def exp_class_weights(counts: np.ndarray, alpha: float, max_weight: float = math.inf) -> np.ndarray:
    """Per-class weight ``w_c = min(exp(alpha * (max_k N_k / N_c - 1)), max_weight)``.

    Args:
        counts: [K] non-negative class counts (voxels, pixels or rays per class).
        alpha: growth rate; 0 gives every class 1.
        max_weight: cap of a weight; an absent class (``N_c = 0``) gets it.
    Returns:
        [K] float64 weights; 1 for the most frequent class.
    """
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(over="ignore"):  # max / tiny for an absent class: inf, then capped
        ratio = counts.max() / np.maximum(counts, np.finfo(np.float64).tiny)
        exponent = np.minimum(alpha * (ratio - 1.0), math.log(max_weight))
    return np.exp(exponent)
