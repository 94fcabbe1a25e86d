"""Label class-agnostic masks by the votes of the semantic targets that fall inside them.

Any :class:`PixelTargets` with classes can vote (projected keyframe lidarseg points, or points
accumulated over several sweeps). Each target votes for its class in the segment holding its
pixel, with its confidence as weight. A segment takes the winning class when the total weight
reaches ``min_votes`` and the winner's share of it (the *purity*) reaches ``min_purity``; a
tie between the two strongest classes, too few votes or too low a purity leave the segment
at the ignore index: a mask that straddles two objects is dropped rather than guessed.

Small objects inside a large mask (a traffic cone merged into the road's mask) would be
outvoted and painted with the mask's class. So, optionally, the *minority clusters* of a
segment keep their pixels: votes against the segment's decision, of one class, linked by
steps of at most ``radius`` pixels, form a cluster; a cluster whose weight reaches
``min_votes`` and which holds at least ``min_purity`` of the votes inside its convex hull
claims the pixels of its segment whose nearest vote is one of its members, up to
``radius`` away, unless it lies behind the votes around it (more than ``BEHIND_MARGIN``
farther: the LiDAR, mounted apart from the camera, sees past the edge of a pole or a car).
A lone wrong point forms no cluster; a cluster claims no pixel nearer to another vote than
to its own.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from renderlss.labels.mask_sources import NO_SEGMENT
from renderlss.targets.pixel_targets import PixelTargets

# A minority cluster farther than the votes around it by more than this share is a surface
# the LiDAR sees behind the object the camera sees (the sensors sit apart), not an object.
BEHIND_MARGIN = 0.1


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


def labelled_voters(
    targets: PixelTargets,
    height: int,
    width: int,
    num_classes: int,
    ignore_index: int,
    where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The targets that vote (class not ``ignore_index``): flat pixel index [M] int64, class
    [M] int64, weight (confidence) [M] float64 and depth [M] float64 (0 = none)."""
    classes = targets.semantics.astype(np.int64)
    labelled = classes != ignore_index
    bad = labelled & (classes >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"{where}: target classes {sorted(set(classes[bad].tolist()))} are neither "
            f"0..{num_classes - 1} nor the ignore index {ignore_index}"
        )
    pixels = target_pixel_index(targets.uv[labelled], height, width, where)
    return (
        pixels,
        classes[labelled],
        targets.confidence[labelled].astype(np.float64),
        targets.depth[labelled].astype(np.float64),
    )


def segment_votes(
    pixel_segment: np.ndarray,
    pixels: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    num_segments: int,
    num_classes: int,
) -> np.ndarray:
    """[S, C] float64 summed weights per segment and class of the voters at flat ``pixels``
    [M] (``classes`` [M], ``weights`` [M]); ``pixel_segment`` [H, W] indexes the segments."""
    voter_segment = pixel_segment.ravel()[pixels]
    return np.bincount(
        voter_segment * num_classes + classes,
        weights=weights,
        minlength=num_segments * num_classes,
    ).reshape(num_segments, num_classes)


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


def vote_clusters(points: np.ndarray, groups: np.ndarray, radius: float) -> np.ndarray:
    """[N] int64 single-linkage cluster index (0..K-1) of [N, 2] ``points``: points of the
    same ``groups`` [N] value closer than ``radius`` (inclusive) are linked."""
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    pairs = pairs[groups[pairs[:, 0]] == groups[pairs[:, 1]]]
    links = coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points), len(points))
    )
    return connected_components(links, directed=False)[1].astype(np.int64)


def hull_voters(centres: np.ndarray, segment: np.ndarray, members: np.ndarray) -> np.ndarray:
    """[M] bool: the voters of the members' segment inside (or on) the convex hull of the
    members' pixels; ``centres`` [M, 2] pixel coordinates, ``segment`` [M], ``members`` [K]
    indices. The votes the cluster has to outvote: scattered wrong votes among the segment's
    own span a hull full of other votes, a small object's votes do not."""
    corner = centres[members].min(0)
    size = (centres[members].max(0) - corner + 1).astype(np.int64)
    hull = cv2.convexHull((centres[members] - corner).astype(np.int32))
    area = np.zeros((size[1], size[0]), dtype=np.uint8)
    cv2.fillConvexPoly(area, hull, 1)
    local = (centres - corner).astype(np.int64)
    inside = np.all((local >= 0) & (local < size), axis=1)
    inside[inside] = area[local[inside, 1], local[inside, 0]] > 0
    return inside & (segment == segment[members[0]])


def minority_cluster_labels(
    pixel_segment: np.ndarray,
    pixels: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    depth: np.ndarray,
    decided: np.ndarray,
    radius: float,
    min_votes: float,
    min_purity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the pixels claimed by minority clusters (see the module docstring).

    Args:
        pixel_segment: [H, W] int64 segment index of every pixel.
        pixels, classes, weights, depth: [M] flat pixel, class, weight and depth (0 = none)
            of the labelled voters.
        decided: [S] int64 class decided for each segment (anything else where undecided).
        radius: longest link within a cluster and farthest claimed pixel, in pixels.
    Returns:
        class [H, W] int64 (-1 where no cluster claims the pixel) and the claiming
        cluster's purity [H, W] float32.
    """
    height, width = pixel_segment.shape
    claimed_class = np.full((height, width), -1, dtype=np.int64)
    claimed_purity = np.zeros((height, width), dtype=np.float32)
    segment = pixel_segment.ravel()[pixels]
    dissent = np.flatnonzero(classes != decided[segment])
    if len(dissent) == 0:
        return claimed_class, claimed_purity
    centres = np.stack([pixels % width, pixels // width], axis=1).astype(np.float64)
    member = vote_clusters(
        centres[dissent], segment[dissent] * (classes.max() + 1) + classes[dissent], radius
    )
    count = int(member.max()) + 1
    weight = np.bincount(member, weights=weights[dissent], minlength=count)
    # Votes of the same segment within the radius of a member (each voter once per cluster,
    # however many members see it): the surroundings whose depth the cluster is compared with.
    neighbours = cKDTree(centres).query_ball_point(centres[dissent], radius)
    seen = np.concatenate([np.asarray(n, dtype=np.int64) for n in neighbours])
    seer = np.repeat(np.arange(len(dissent)), [len(n) for n in neighbours])
    same = segment[seen] == segment[dissent[seer]]
    pairs = np.unique(member[seer[same]] * len(pixels) + seen[same])
    purity = np.zeros(count)
    for index in np.flatnonzero(weight >= min_votes):
        inside = hull_voters(centres, segment, dissent[member == index])
        purity[index] = weight[index] / weights[inside].sum()
    # Mean depth of the members against that of the other votes around them.
    has_depth = weights * (depth > 0)
    member_sums = [
        np.bincount(member, weights=w[dissent], minlength=count)
        for w in (has_depth * depth, has_depth)
    ]
    around_sums = [
        np.bincount(pairs // len(pixels), weights=w[pairs % len(pixels)], minlength=count)
        for w in (has_depth * depth, has_depth)
    ]
    others = [a - m for a, m in zip(around_sums, member_sums)]
    with np.errstate(invalid="ignore", divide="ignore"):
        behind = (member_sums[0] / member_sums[1]) > (others[0] / others[1]) * (1.0 + BEHIND_MARGIN)
    behind &= (member_sums[1] > 0) & (others[1] > 1e-9)
    accepted = (weight >= min_votes) & (purity >= min_purity) & ~behind
    # Every pixel's nearest voter (distance transform of the voter-free pixels).
    voter_at = np.full(height * width, -1, dtype=np.int64)
    voter_at[pixels] = np.arange(len(pixels))
    distance, (rows, cols) = ndimage.distance_transform_edt(
        voter_at.reshape(height, width) < 0, return_indices=True
    )
    nearest = voter_at.reshape(height, width)[rows, cols]
    voter_cluster = np.full(len(pixels), -1, dtype=np.int64)
    voter_cluster[dissent] = np.where(accepted[member], member, -1)
    cluster = voter_cluster[nearest]
    claim = (cluster >= 0) & (distance <= radius) & (pixel_segment == segment[nearest])
    claimed_class[claim] = classes[nearest[claim]]
    claimed_purity[claim] = purity[cluster[claim]]
    return claimed_class, claimed_purity


def vote_labels(
    segments: np.ndarray,
    targets: PixelTargets,
    num_classes: int,
    ignore_index: int,
    min_votes: float,
    min_purity: float,
    where: str = "votes",
    minority_radius: float = 0.0,
    minority_min_votes: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Label image of a segment image voted by ``targets`` (see the module docstring).

    Args:
        segments: [H, W] int32 segment image, -1 = no mask (such pixels stay ignored).
        targets: the voters, in the image's own pixel coordinates.
        where: names the image in errors.
        minority_radius: link and claim radius (pixels) of minority clusters; 0 = none.
        minority_min_votes: the weight a minority cluster needs (its purity: ``min_purity``).
    Returns:
        labels [H, W] uint8 (``ignore_index`` where unlabelled) and confidence [H, W]
        float32 (the purity of the pixel's segment or minority cluster, 0 where unlabelled).
    """
    if segments.ndim != 2:
        raise ValueError(f"{where}: segment image must be [H, W], got shape {segments.shape}")
    height, width = segments.shape
    segment_ids, pixel_segment = np.unique(segments, return_inverse=True)
    pixel_segment = pixel_segment.reshape(height, width).astype(np.int64)
    pixels, classes, weights, depth = labelled_voters(
        targets, height, width, num_classes, ignore_index, where
    )
    votes = segment_votes(pixel_segment, pixels, classes, weights, len(segment_ids), num_classes)
    decided, purity = decide_classes(votes, min_votes, min_purity, ignore_index)
    no_mask = segment_ids == NO_SEGMENT
    decided[no_mask], purity[no_mask] = ignore_index, 0.0
    labels, confidence = decided[pixel_segment], purity[pixel_segment]
    if minority_radius > 0 and len(pixels):
        claimed, claimed_purity = minority_cluster_labels(
            pixel_segment,
            pixels,
            classes,
            weights,
            depth,
            decided.astype(np.int64),
            minority_radius,
            minority_min_votes,
            min_purity,
        )
        keep = (claimed >= 0) & ~no_mask[pixel_segment]
        labels = np.where(keep, claimed, labels).astype(np.uint8)
        confidence = np.where(keep, claimed_purity, confidence)
    return labels, confidence
