"""Classes for the unlabelled LiDAR sweeps between keyframes, transferred from labelled points.

Only keyframe sweeps carry lidarseg labels (2 Hz); the 20 Hz sweeps between them do not.
After the motion compensation of the accumulated cloud (``depth_accumulation``: static points
in the global frame, points of annotated objects in their instance's box frame), every
unlabelled point takes the majority class of its ``k`` nearest labelled points closer than
``radius`` metres, with the winner's share of those votes as its confidence; a point with no
labelled point that near stays :data:`UNKNOWN`. Neighbours are searched within one *group*
only: static points vote for static points, and the points of one instance (compared in its
box frame, so they line up however far the object moved) for that instance alone, never the
background it passes.

Ties between classes with equally many votes go to the class of the nearest tied voter.
Labelled points whose class is the ignore index (lidarseg noise) are treated as unlabelled.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from renderlss.geometry import transform_points
from renderlss.labels.box_motion import BoxTrack, assign_points_to_boxes, box_at, boxes_at
from renderlss.labels.depth_accumulation import AccumulatedCloud, LidarFrame, accumulate_frames
from renderlss.targets.lidar import load_lidar_points, load_lidarseg_labels, outside_box

UNKNOWN = -1  # class of a point without a label (unlabelled and no labelled point near)


@dataclass
class LabelTransferConfig:
    """How unlabelled sweep points get classes (see the module docstring)."""

    k: int = 5  # labelled neighbours that vote
    radius: float = 0.5  # metres; farther labelled points do not vote
    # Transferred classes below this vote share are not used (their pixels stay unlabelled).
    min_confidence: float = 0.6

    def validate(self, where: str) -> None:
        if self.k < 1:
            raise ValueError(f"{where}.k: must be >= 1, got {self.k}")
        if self.radius <= 0:
            raise ValueError(f"{where}.radius: must be > 0, got {self.radius}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"{where}.min_confidence: must lie in [0, 1]")


def add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--transfer-k / --transfer-radius / --transfer-min-confidence`` options of the
    label builders (read back by :func:`transfer_config_from_args`)."""
    defaults = LabelTransferConfig()
    parser.add_argument(
        "--transfer-k",
        type=int,
        default=defaults.k,
        help="labelled neighbours voting for an unlabelled sweep point (default %(default)s)",
    )
    parser.add_argument(
        "--transfer-radius",
        type=float,
        default=defaults.radius,
        help="metres: farther labelled points do not vote; a point without any stays "
        "unknown (default %(default)s)",
    )
    parser.add_argument(
        "--transfer-min-confidence",
        type=float,
        default=defaults.min_confidence,
        help="vote share a transferred class needs to be used (default %(default)s)",
    )


def transfer_config_from_args(args: argparse.Namespace) -> LabelTransferConfig:
    """The validated :class:`LabelTransferConfig` of :func:`add_transfer_arguments`' options."""
    config = LabelTransferConfig(
        args.transfer_k, args.transfer_radius, args.transfer_min_confidence
    )
    config.validate("label_transfer")
    return config


@dataclass(frozen=True)
class PointClasses:
    """How lidarseg labels become classes: ``learning_table`` [256] uint8 lidarseg index ->
    Occ3D class (``learning_map_table``), ``num_classes`` Occ3D classes and the
    ``ignore_index`` of unlabelled pixels."""

    learning_table: np.ndarray
    num_classes: int
    ignore_index: int


def knn_vote(
    queries: np.ndarray,
    query_groups: np.ndarray,
    voters: np.ndarray,
    voter_groups: np.ndarray,
    voter_classes: np.ndarray,
    k: int,
    radius: float,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Majority class of the ``k`` nearest voters of the same group closer than ``radius``.

    Args:
        queries: [Q, 3] points; query_groups: [Q] int64 group of each.
        voters: [V, 3] labelled points; voter_groups: [V] int64; voter_classes: [V] int64 in
            0..num_classes-1.
    Returns:
        classes [Q] int64 (:data:`UNKNOWN` where no voter is near; ties go to the class of
        the nearest tied voter) and confidence [Q] float32 (the winner's share of the votes
        found, 0 where unknown).
    """
    classes = np.full(len(queries), UNKNOWN, dtype=np.int64)
    confidence = np.zeros(len(queries), dtype=np.float32)
    if not len(queries) or not len(voters):
        return classes, confidence
    # A fourth coordinate keeps groups apart: points of two groups are at least
    # 2 * radius + 1 apart, so no search within ``radius`` crosses a group.
    spacing = 2.0 * radius + 1.0
    tree = cKDTree(np.column_stack([voters, voter_groups * spacing]))
    _, index = tree.query(
        np.column_stack([queries, query_groups * spacing]), k=k, distance_upper_bound=radius
    )
    index = index.reshape(len(queries), k)  # k = 1 returns [Q]
    found = index < len(voters)  # missing neighbours come back as index V
    voted = np.where(found, voter_classes[np.minimum(index, len(voters) - 1)], 0)
    rows = np.repeat(np.arange(len(queries)), k).reshape(len(queries), k)
    counts = np.bincount(
        (rows * num_classes + voted)[found], minlength=len(queries) * num_classes
    ).reshape(len(queries), num_classes)
    best = counts.max(axis=1)
    # Neighbours come nearest first: the first one voting for a class with the top count wins.
    tied = found & (counts[rows, voted] == best[:, None])
    winner = voted[np.arange(len(queries)), np.argmax(tied, axis=1)]
    votes = found.sum(axis=1)
    known = votes > 0
    classes[known] = winner[known]
    confidence[known] = best[known] / votes[known]
    return classes, confidence


@dataclass
class LabelledCloud:
    """An accumulated cloud with a class per point.

    Attributes:
        cloud: the points (``depth_accumulation.AccumulatedCloud``).
        static_classes: [S] int64 Occ3D class of each static point (:data:`UNKNOWN`: none).
        object_classes: [O] int64 class of each object point.
        static_confidence, object_confidence: [S], [O] float32: 1 for lidarseg labels, the
            vote share for transferred ones, 0 for unknown.
    """

    cloud: AccumulatedCloud
    static_classes: np.ndarray
    object_classes: np.ndarray
    static_confidence: np.ndarray
    object_confidence: np.ndarray

    def placed_classes(
        self, tracks: dict[str, BoxTrack], timestamp: int, max_extrapolation_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class [N] int64 and confidence [N] float32 of the points
        ``cloud.place_at(tracks, timestamp, max_extrapolation_s)`` returns, in its order."""
        order = placed_order(self.cloud, tracks, timestamp, max_extrapolation_s)
        classes = np.concatenate([self.static_classes, self.object_classes])
        confidence = np.concatenate([self.static_confidence, self.object_confidence])
        return classes[order], confidence[order]


def placed_order(
    cloud: AccumulatedCloud, tracks: dict[str, BoxTrack], timestamp: int, max_extrapolation_s: float
) -> np.ndarray:
    """[N] int64 index into ``static_points`` followed by ``object_points`` of each point that
    ``AccumulatedCloud.place_at`` returns: static points, then each instance's points (in
    instance order) whose box exists at ``timestamp``."""
    order = np.argsort(cloud.object_instance, kind="stable")
    bounds = np.searchsorted(
        cloud.object_instance[order], np.arange(len(cloud.instance_tokens) + 1)
    )
    parts = [np.arange(len(cloud.static_points))]
    for index, token in enumerate(cloud.instance_tokens):
        if box_at(tracks[token], timestamp, max_extrapolation_s) is not None:
            parts.append(len(cloud.static_points) + order[bounds[index] : bounds[index + 1]])
    return np.concatenate(parts)


def labelled_sweep(
    frame: LidarFrame,
    lidarseg_path: str,
    dataroot: Path,
    ego_box: tuple[float, ...],
    point_classes: PointClasses,
) -> tuple[np.ndarray, np.ndarray]:
    """Points [P, 3] float64 in the ego frame and class [P] int64 of a labelled sweep, the
    ego body's returns removed as ``depth_accumulation.sweep_points_in_ego`` removes them
    (same points, same order); :data:`UNKNOWN` for the ignore index."""
    points = load_lidar_points(dataroot / frame.data_path)[:, :3]
    raw = load_lidarseg_labels(dataroot / lidarseg_path, len(points))
    points_ego = transform_points(frame.lidar2ego, points.astype(np.float64))
    keep = outside_box(points_ego, ego_box)
    classes = point_classes.learning_table[raw[keep]].astype(np.int64)
    classes[classes == point_classes.ignore_index] = UNKNOWN
    return points_ego[keep], classes


def split_like_accumulation(
    classes: np.ndarray,
    points_ego: np.ndarray,
    frame: LidarFrame,
    tracks: dict[str, BoxTrack] | None,
    box_margin: float,
    max_extrapolation_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The [P] ``classes`` of the [P, 3] ego-frame points of one sweep split the way
    ``accumulate_frames`` splits the points: static [S], and object [O] box by box in the
    order of ``boxes_at``."""
    if not tracks:
        return classes, np.zeros(0, dtype=np.int64)
    boxes = boxes_at(tracks, frame.timestamp, max_extrapolation_s)
    owner = assign_points_to_boxes(
        transform_points(frame.ego2global, points_ego), boxes, box_margin
    )
    riding = np.flatnonzero(owner >= 0)
    return classes[owner < 0], classes[riding[np.argsort(owner[riding], kind="stable")]]


def merge_clouds(clouds: list[AccumulatedCloud]) -> AccumulatedCloud:
    """One cloud of several, instance indices renumbered over the union of their tokens."""
    tokens: dict[str, int] = {}
    owners = []
    for cloud in clouds:
        remap = np.array(
            [tokens.setdefault(t, len(tokens)) for t in cloud.instance_tokens], dtype=np.int64
        )
        owners.append(remap[cloud.object_instance] if len(remap) else cloud.object_instance)
    return AccumulatedCloud(
        static_points=np.concatenate([c.static_points for c in clouds]).reshape(-1, 3),
        object_points=np.concatenate([c.object_points for c in clouds]).reshape(-1, 3),
        object_instance=np.concatenate(owners).astype(np.int64),
        instance_tokens=list(tokens),
        ego_points=sum(c.ego_points for c in clouds),
    )


def accumulate_labelled_frames(
    frames: list[LidarFrame],
    lidarseg_paths: dict[str, str],
    dataroot: str | Path,
    point_classes: PointClasses,
    ego_box: tuple[float, ...],
    tracks: dict[str, BoxTrack] | None,
    box_margin: float,
    max_extrapolation_s: float,
) -> tuple[AccumulatedCloud, np.ndarray, np.ndarray]:
    """``accumulate_frames`` of ``frames`` with the lidarseg class of each point.

    Args:
        lidarseg_paths: lidarseg file (relative to ``dataroot``) per LiDAR ``data_path`` of
            the labelled sweeps; sweeps not in it are unlabelled.
        the rest: as ``depth_accumulation.accumulate_frames``.
    Returns:
        The cloud, static classes [S] int64 and object classes [O] int64 (:data:`UNKNOWN`
        for points of unlabelled sweeps).
    """
    dataroot = Path(dataroot)
    clouds, static, objects = [], [], []
    for frame in frames:
        cloud = accumulate_frames(
            [frame], dataroot, ego_box, tracks, box_margin, max_extrapolation_s
        )
        clouds.append(cloud)
        if frame.data_path in lidarseg_paths:
            points_ego, classes = labelled_sweep(
                frame, lidarseg_paths[frame.data_path], dataroot, ego_box, point_classes
            )
            static_part, object_part = split_like_accumulation(
                classes, points_ego, frame, tracks, box_margin, max_extrapolation_s
            )
        else:
            static_part = np.full(len(cloud.static_points), UNKNOWN, dtype=np.int64)
            object_part = np.full(len(cloud.object_points), UNKNOWN, dtype=np.int64)
        static.append(static_part)
        objects.append(object_part)
    return merge_clouds(clouds), np.concatenate(static), np.concatenate(objects)


def transfer_labels(
    cloud: AccumulatedCloud,
    static_classes: np.ndarray,
    object_classes: np.ndarray,
    config: LabelTransferConfig,
    num_classes: int,
) -> LabelledCloud:
    """Classes for the unlabelled points of ``cloud`` from its labelled ones (module
    docstring): static points from static points in the global frame, object points from
    the same instance's points in its box frame.

    Args:
        static_classes: [S] int64, object_classes: [O] int64 measured classes
            (:data:`UNKNOWN` = to be transferred).
    """
    points = np.concatenate([cloud.static_points, cloud.object_points]).reshape(-1, 3)
    groups = np.concatenate(
        [np.zeros(len(cloud.static_points), np.int64), cloud.object_instance + 1]
    )
    measured = np.concatenate([static_classes, object_classes]).astype(np.int64)
    labelled = measured != UNKNOWN
    classes = measured.copy()
    confidence = labelled.astype(np.float32)
    queries = np.flatnonzero(~labelled)
    classes[queries], confidence[queries] = knn_vote(
        points[queries],
        groups[queries],
        points[labelled],
        groups[labelled],
        measured[labelled],
        config.k,
        config.radius,
        num_classes,
    )
    split = len(cloud.static_points)
    return LabelledCloud(
        cloud, classes[:split], classes[split:], confidence[:split], confidence[split:]
    )
