"""Weighted ray sampling: which of a sample's candidate target pixels become training rays.

Rare classes are drawn more often (class-balance weight), rays of adjacent keyframes less
often, and adjacent-frame rays that hit a dynamic class not at all (the object has moved
since, so the ray's target is wrong in the current frame).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from renderlss.class_balance import exp_class_weights


def class_balance_weights(
    semantics: np.ndarray, num_classes: int, alpha: float, ignore_index: int
) -> np.ndarray:
    """Per-class sampling weight ``exp(alpha * (max_c N_c / N_c - 1))`` of the classes present
    (``renderlss.class_balance.exp_class_weights``).

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
        weights[present] = exp_class_weights(counts[present], alpha)
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


def unlabelled_quota(
    labelled: np.ndarray, quota: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """An acceptance rule for candidates visited in draw order (see
    :func:`draw_reachable_rays`): labelled candidates always pass, unlabelled ones only until
    ``quota`` of them have passed.

    Dense depth gives a depth target at nearly every pixel but no class; drawn by weight
    alone, such rays would crowd the class targets out of a sample. A LiDAR sweep, with few
    unlabelled points, never reaches the quota and is drawn as before.

    Args:
        labelled: [M] bool, the candidate has a class; quota: most unlabelled rays to accept.
    Returns:
        ``admit(index [K], ok [K] bool) -> [K] bool`` for successive chunks of candidates in
        draw order, ``ok`` being their other acceptance test (e.g. inside the grid).
    """
    remaining = quota

    def admit(index: np.ndarray, ok: np.ndarray) -> np.ndarray:
        nonlocal remaining
        unlabelled = ok & ~labelled[index]
        allowed = unlabelled & (np.cumsum(unlabelled) <= remaining)
        remaining -= int(allowed.sum())
        return (ok & labelled[index]) | allowed

    return admit


def draw_reachable_rays(
    weights: np.ndarray,
    num_rays: int,
    reachable: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw ``num_rays`` indices with probability proportional to ``weights`` [M] among the
    candidates that ``reachable`` accepts, testing only the candidates actually drawn.

    Candidates are visited in the order of a weighted draw without replacement (exponential
    clocks ``E_i / w_i``, smallest first) and the rejected ones skipped, which is a weighted
    draw without replacement from the accepted ones; so a sample with millions of dense
    target pixels computes ray geometry for about ``num_rays`` of them. When fewer than
    ``num_rays`` candidates are accepted, the rest is drawn from them with replacement, so
    every sample yields exactly ``num_rays`` rays.

    Args:
        weights: [M] non-negative sampling weights.
        reachable: maps [K] int64 candidate indices to a [K] bool mask.
    Returns:
        [num_rays] int64 candidate indices.
    Raises:
        ValueError: no candidate has a positive weight, or none of those is accepted.
    """
    positive = np.flatnonzero(weights > 0)
    if not len(positive):
        raise ValueError("no candidate ray has a positive sampling weight")
    clocks = rng.exponential(size=len(positive)) / weights[positive]
    accepted: list[np.ndarray] = []
    found = visited = 0
    while found < num_rays and visited < len(positive):
        # Visit enough candidates for the missing rays at the acceptance rate seen so far.
        rate = found / visited if visited else 1.0
        wanted = int(np.ceil(1.5 * (num_rays - found) / max(rate, 0.01))) + 16
        stop = min(len(positive), visited + wanted)
        if stop < len(positive):
            first = np.argpartition(clocks, stop - 1)[:stop]
        else:
            first = np.arange(len(positive))
        visit = first[np.argsort(clocks[first], kind="stable")][visited:stop]
        candidates = positive[visit]
        accepted.append(candidates[reachable(candidates)])
        found += len(accepted[-1])
        visited = stop
    chosen = np.concatenate(accepted)
    if not len(chosen):
        raise ValueError("no candidate ray with a positive sampling weight reaches the grid")
    if len(chosen) >= num_rays:
        return chosen[:num_rays]
    p = weights[chosen] / weights[chosen].sum()
    extra = rng.choice(chosen, size=num_rays - len(chosen), replace=True, p=p)
    return np.concatenate([chosen, extra])
