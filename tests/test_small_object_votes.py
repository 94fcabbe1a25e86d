"""A compact cluster of minority votes inside a large mask keeps its pixels (a traffic cone
merged into the road's mask); scattered wrong votes and votes seen behind do not."""

from __future__ import annotations

import numpy as np

from renderlss.labels.mask_voting import vote_labels
from renderlss.targets.pixel_targets import PixelTargets

ROAD, CONE, IGNORE = 11, 9, 255
HEIGHT, WIDTH = 20, 30


def votes(cells: dict[tuple[int, int], tuple[int, float]]) -> PixelTargets:
    """One vote at the centre of each (row, col) with its (class, depth)."""
    rows, cols = np.array(list(cells)).T
    classes, depth = np.array(list(cells.values())).T
    return PixelTargets(
        uv=np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float32),
        depth=depth.astype(np.float32),
        semantics=classes.astype(np.uint8),
        confidence=np.ones(len(rows), dtype=np.float32),
    )


def road_with(cone_cells: list[tuple[int, int]], cone_depth: float = 10.0) -> PixelTargets:
    """Road votes (10 m) on every even row and column, cone votes at ``cone_cells``."""
    cells = {(r, c): (ROAD, 10.0) for r in range(0, HEIGHT, 2) for c in range(0, WIDTH, 2)}
    cells.update({cell: (CONE, cone_depth) for cell in cone_cells})
    return votes(cells)


ONE_MASK = np.zeros((HEIGHT, WIDTH), dtype=np.int32)
CONE_CELLS = [(8, 8), (8, 10), (10, 8), (10, 10)]


def label(targets: PixelTargets, radius: float) -> tuple[np.ndarray, np.ndarray]:
    return vote_labels(
        ONE_MASK, targets, 17, IGNORE, 3, 0.7, minority_radius=radius, minority_min_votes=3
    )


def test_without_minority_clusters_the_cone_is_outvoted():
    labels, _ = label(road_with(CONE_CELLS), radius=0)
    assert np.all(labels == ROAD)


def test_a_compact_cluster_keeps_the_pixels_nearest_its_votes():
    targets = road_with(CONE_CELLS)
    labels, confidence = label(targets, radius=2.5)
    # Brute force: distance of every pixel to the nearest cone and the nearest road vote.
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    cells = np.floor(targets.uv[:, ::-1]).astype(int)  # (row, col)
    gap = np.hypot(rows[..., None] - cells[:, 0], cols[..., None] - cells[:, 1])
    to_cone = gap[..., targets.semantics == CONE].min(-1)
    to_road = gap[..., targets.semantics == ROAD].min(-1)
    surely_cone = (to_cone < to_road) & (to_cone <= 2.5)
    maybe_cone = (to_cone <= to_road) & (to_cone <= 2.5)  # ties go either way
    assert surely_cone.sum() == 9  # the 4 votes, the 4 pixels between pairs, the centre
    assert np.all(labels[surely_cone] == CONE)
    assert np.all(labels[~maybe_cone] == ROAD)
    assert np.all(confidence[labels == CONE] == 1.0)  # only cone votes inside the hull


def test_scattered_wrong_votes_and_votes_seen_behind_keep_the_mask_class():
    scattered = [(2, 2), (10, 16), (16, 26)]  # three lone votes: no links within 2.5 px
    assert np.all(label(road_with(scattered), radius=2.5)[0] == ROAD)
    # A cluster whose hull holds road votes too: purity 4 / (4 + 3 road) < 0.7.
    wide = [(4, 4), (4, 7), (7, 4), (7, 7)]
    assert np.all(label(road_with(wide, 10.0), radius=3.5)[0] == ROAD)
    # Compact, but 30 % farther than the road around it: the LiDAR saw past an edge.
    assert np.all(label(road_with(CONE_CELLS, cone_depth=13.0), radius=2.5)[0] == ROAD)


def test_no_mask_pixels_stay_unlabelled():
    segments = ONE_MASK.copy()
    segments[:, 9:] = -1  # the cone's right half and everything beyond: no mask
    labels, _ = vote_labels(
        segments, road_with(CONE_CELLS), 17, IGNORE, 3, 0.7, minority_radius=2.5
    )
    assert np.all(labels[:, 9:] == IGNORE)
