"""Where a rendered-depth error comes from: the error of groups of pixels.

One pooled AbsRel hides which surfaces are wrong. Grouping the scored pixels by the class of
the surface they see, by the distance of that surface and by the rendered opacity tells
whether an error is a class (a near object, the road), a range (resolution near the camera,
floaters far away) or a transparency problem. ``contribution`` is each group's share of the
pooled AbsRel (the shares of a partition sum to the pooled AbsRel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from renderlss.eval.depth_metrics import DELTA_THRESHOLDS
from renderlss.geometry.grid import VoxelGrid

# Camera-z bands in metres: the first ones are where a voxel is a large part of the depth.
DISTANCE_BANDS = (0.0, 3.0, 5.0, 10.0, 20.0, 40.0, 80.0)
OPACITY_BANDS = (0.0, 0.5, 0.9, 0.99, 1.0)


def band_groups(values: np.ndarray, edges: Sequence[float], unit: str) -> dict[str, np.ndarray]:
    """Masks of ``values`` [M] in ``[edges[i], edges[i + 1])``, the last band closed."""
    groups = {}
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = (values >= low) & ((values <= high) if last else (values < high))
        groups[f"{low:g}-{high:g} {unit}"] = inside
    return groups


def class_groups(classes: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Masks of the pixels of each class index present in ``classes`` [M] (named by
    ``names``; indices beyond it by number; negative = no class, in no group)."""
    return {
        (names[k] if k < len(names) else f"class {k}"): classes == k
        for k in np.unique(classes).tolist()
        if k >= 0
    }


def value_at_depth(
    origins: np.ndarray,
    dirs: np.ndarray,
    z_per_t: np.ndarray,
    depth: np.ndarray,
    volume: np.ndarray,
    grid: VoxelGrid,
) -> np.ndarray:
    """[M] int64 value of ``volume`` [X, Y, Z] (labels, or a mask) in the voxel holding each
    ray's point at camera z ``depth`` [M] (the rendered surface), -1 where that point lies
    outside the grid.

    Args:
        origins, dirs: [M, 3] rays in the grid's frame (unit directions); z_per_t: [M] camera
            z per metre along the ray.
    """
    points = origins + dirs * (depth / z_per_t)[:, None]
    index, inside = grid.point_to_index(points)
    found = np.full(len(depth), -1, dtype=np.int64)
    i, j, k = index[inside].T
    found[inside] = volume[i, j, k]
    return found


def end_voxel_groups(
    label_at_end: np.ndarray, seen_at_end: np.ndarray, free_index: int, ignore_index: int
) -> dict[str, np.ndarray]:
    """Masks of the pixels by what the labels say of the voxel their rendered surface lies in
    (``value_at_depth`` of the labels and of the camera mask): free and seen by the cameras
    (the ray stopped in empty space: a haze or floater), free but unseen (it went through a
    surface into the space behind it), occupied, or unknown (ignored label, outside the grid)."""
    unknown = (label_at_end < 0) | (label_at_end == ignore_index)
    free = label_at_end == free_index
    seen = seen_at_end > 0
    return {
        "free, seen by the cameras": free & seen,
        "free, unseen": free & ~seen,
        "occupied": ~free & ~unknown,
        "unknown": unknown,
    }


def group_errors(
    pred: np.ndarray,
    target: np.ndarray,
    opacity: np.ndarray,
    groups: Mapping[str, np.ndarray],
) -> dict[str, dict[str, float]]:
    """Depth error of each group of pixels.

    Args:
        pred, target, opacity: [M] rendered depth, true depth (> 0), rendered opacity.
        groups: name -> [M] bool mask.
    Returns:
        name -> ``count``, ``share``, ``abs_rel``, ``contribution``, ``median_signed``,
        ``delta1``, ``opacity``: pixel count, share of all M pixels, AbsRel, its contribution to
        the pooled AbsRel (sum of the group's |e| / g over M), median (p - g) / g, share with
        max(p / g, g / p) < 1.25, mean opacity. Empty groups are left out.
    """
    relative = (pred - target) / target
    ratio = np.maximum(pred / target, target / pred)
    rows = {}
    for name, mask in groups.items():
        count = int(mask.sum())
        if count == 0:
            continue
        rows[name] = dict(
            count=float(count),
            share=count / len(target),
            abs_rel=float(np.abs(relative[mask]).mean()),
            contribution=float(np.abs(relative[mask]).sum() / len(target)),
            median_signed=float(np.median(relative[mask])),
            delta1=float((ratio[mask] < DELTA_THRESHOLDS[0]).mean()),
            opacity=float(opacity[mask].mean()),
        )
    return rows


def format_breakdown(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table of ``group_errors`` rows."""
    lines = [
        "| group | pixels | share | AbsRel | of pooled AbsRel | median signed | δ<1.25 | opacity |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {int(r['count'])} | {r['share']:.3f} | {r['abs_rel']:.3f} | "
            f"{r['contribution']:.3f} | {r['median_signed']:+.3f} | {r['delta1']:.3f} | "
            f"{r['opacity']:.3f} |"
        )
    return "\n".join(lines)
