"""The analytic world of one scene: flat ground split into regions (road, sidewalk, yards),
upright boxes for everything standing on it, and the motion of every actor and of the ego
car. Geometry is exact, so depth, semantics and occupancy are known everywhere.

The ground is the plane z = 0 of the global frame; it is a solid below its surface. Objects
(``Actor``) are made of upright boxes (``parts``) and move along the road at constant
speed; the ego car drives along its lane with a smoothly varying speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from renderlss.geometry import yaw_to_quaternion
from renderlss.synthetic.road import Road

# Street cross-section, |d| in metres from the centreline (same on both sides).
LANE_WIDTH = 3.5
LANE_EDGE = 2 * LANE_WIDTH  # outer edge of the driving lanes
ROAD_EDGE = 9.5  # outer edge of the parking strip = kerb
SIDEWALK_EDGE = 12.5  # outer edge of the sidewalk
PAINT_HALF_WIDTH = 0.08  # lane markings
CENTRE_LINE_GAP = 0.15  # half the distance between the two yellow centre lines
DASH_LENGTH, DASH_PERIOD = 3.0, 9.0

MARK_NONE, MARK_WHITE, MARK_YELLOW = 0, 1, 2


@dataclass(frozen=True)
class Actor:
    """An object standing on the ground: its pose comes from road coordinates.

    ``size`` is the annotation box ``(w, l, h)`` (nuScenes order); ``parts`` are upright boxes
    ``(centre (x, y, z), half extents (hx, hy, hz))`` in the object frame (x forward along
    ``l``, origin on the ground below the box centre), all inside the annotation box.
    ``speed`` is ds/dt along the road; heading = road heading + ``rel_yaw``.
    """

    category: str
    s0: float
    d: float
    rel_yaw: float
    speed: float
    size: tuple[float, float, float]
    parts: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...]
    annotated: bool
    attribute: str = ""


@dataclass(frozen=True)
class EgoMotion:
    """Ego car along lane offset ``d``: speed v(t) = v0 + amp * sin(omega t + phase) > 0."""

    s0: float
    d: float
    v0: float
    amp: float
    omega: float
    phase: float

    def arc_length(self, t: np.ndarray) -> np.ndarray:
        """[N] s(t), the integral of v from 0 to t."""
        t = np.asarray(t, dtype=np.float64)
        wobble = np.cos(self.omega * t + self.phase) - np.cos(self.phase)
        return self.s0 + self.v0 * t - self.amp / self.omega * wobble


@dataclass
class Boxes:
    """Upright boxes at one instant, global frame: ``centre`` [P, 3], ``half`` [P, 3] (half
    extents along the box's x (heading), y, z), ``yaw`` [P], ``label`` [P] lidarseg index,
    ``actor`` [P] index of the owning actor."""

    centre: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    label: np.ndarray
    actor: np.ndarray

    def __len__(self) -> int:
        return len(self.yaw)

    def subset(self, keep: np.ndarray) -> Boxes:
        return Boxes(
            self.centre[keep], self.half[keep], self.yaw[keep], self.label[keep], self.actor[keep]
        )

    def concatenate(self, other: Boxes) -> Boxes:
        """These boxes followed by ``other``."""
        fields = ("centre", "half", "yaw", "label", "actor")
        return Boxes(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in fields))

    def transformed(self, pose: np.ndarray) -> Boxes:
        """The boxes in another frame; ``pose`` [4, 4] must be a rotation about z (+ shift)."""
        yaw = np.arctan2(pose[1, 0], pose[0, 0])
        centre = self.centre @ pose[:3, :3].T + pose[:3, 3]
        return Boxes(centre, self.half, self.yaw + yaw, self.label, self.actor)


@dataclass
class SceneWorld:
    """One scene's world. ``flat_patches`` [M, 4] rows ``(side, s_lo, s_hi, depth)``: yard
    areas of flat.other from the sidewalk edge out to ``depth`` on side ``+1``/``-1``."""

    name: str
    road: Road
    actors: list[Actor]
    flat_patches: np.ndarray
    ego: EgoMotion
    sun: np.ndarray
    category_index: dict[str, int]
    _part_cache: dict = field(default_factory=dict, repr=False)

    def ego_pose(self, t: float) -> np.ndarray:
        """[4, 4] ``T_global_from_ego`` at scene time ``t`` (seconds); ego z = 0, level."""
        s = self.ego.arc_length(np.array([t]))
        xy, heading = self.road.to_global(s, np.array([self.ego.d]))
        pose = np.eye(4)
        c, si = np.cos(heading[0]), np.sin(heading[0])
        pose[:2, :2] = [[c, -si], [si, c]]
        pose[:2, 3] = xy[0]
        return pose

    def actor_poses(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Actor positions and headings at time ``t``: xy [A, 2], yaw [A]."""
        a = self._parts()
        s = a["s0"] + a["speed"] * t
        xy, heading = self.road.to_global(s, a["d"])
        return xy, heading + a["rel_yaw"]

    def _parts(self) -> dict:
        if not self._part_cache:
            acts = self.actors
            offsets, halves, owners, labels = [], [], [], []
            for i, actor in enumerate(acts):
                for offset, half in actor.parts:
                    offsets.append(offset)
                    halves.append(half)
                    owners.append(i)
                    labels.append(self.category_index[actor.category])
            self._part_cache.update(
                s0=np.array([a.s0 for a in acts]),
                d=np.array([a.d for a in acts]),
                rel_yaw=np.array([a.rel_yaw for a in acts]),
                speed=np.array([a.speed for a in acts]),
                offset=np.array(offsets, dtype=np.float64).reshape(-1, 3),
                half=np.array(halves, dtype=np.float64).reshape(-1, 3),
                owner=np.array(owners, dtype=np.int64),
                label=np.array(labels, dtype=np.int64),
            )
        return self._part_cache

    def boxes_at(self, t: float) -> Boxes:
        """All parts of all actors at scene time ``t``, global frame."""
        a = self._parts()
        xy, yaw = self.actor_poses(t)
        owner = a["owner"]
        c, s = np.cos(yaw[owner]), np.sin(yaw[owner])
        off = a["offset"]
        centre = np.stack(
            [
                xy[owner, 0] + c * off[:, 0] - s * off[:, 1],
                xy[owner, 1] + s * off[:, 0] + c * off[:, 1],
                off[:, 2],
            ],
            axis=-1,
        )
        return Boxes(centre, a["half"].copy(), yaw[owner], a["label"].copy(), owner.copy())

    def annotation_box(self, actor: int, t: float) -> tuple[list[float], list[float], list[float]]:
        """Global ``(centre [x, y, z], size [w, l, h], rotation [w, x, y, z])`` of an actor."""
        xy, yaw = self.actor_poses(t)
        w, length, h = self.actors[actor].size
        centre = [float(xy[actor, 0]), float(xy[actor, 1]), 0.5 * h]
        rotation = yaw_to_quaternion(float(yaw[actor])).tolist()
        return centre, [w, length, h], rotation

    def ground_label(self, xy: np.ndarray) -> np.ndarray:
        """[N] lidarseg index of the ground at global points ``xy`` [N, 2]."""
        s, d = self.road.from_global(xy)
        ad = np.abs(d)
        idx = self.category_index
        label = np.full(ad.shape, idx["flat.terrain"], dtype=np.int64)
        for side, s_lo, s_hi, depth in self.flat_patches:
            inside = (np.sign(d) == side) & (s >= s_lo) & (s < s_hi)
            inside &= (ad >= SIDEWALK_EDGE) & (ad < SIDEWALK_EDGE + depth)
            label[inside] = idx["flat.other"]
        label[ad < SIDEWALK_EDGE] = idx["flat.sidewalk"]
        label[ad < ROAD_EDGE] = idx["flat.driveable_surface"]
        return label

    def ground_marking(self, xy: np.ndarray) -> np.ndarray:
        """[N] paint on the ground at ``xy`` [N, 2]: MARK_NONE, MARK_WHITE or MARK_YELLOW."""
        s, d = self.road.from_global(xy)
        ad = np.abs(d)
        mark = np.full(ad.shape, MARK_NONE, dtype=np.int64)
        dashes = (np.abs(ad - LANE_WIDTH) < PAINT_HALF_WIDTH) & (
            np.mod(s, DASH_PERIOD) < DASH_LENGTH
        )
        mark[dashes | (np.abs(ad - LANE_EDGE) < PAINT_HALF_WIDTH)] = MARK_WHITE
        mark[np.abs(ad - CENTRE_LINE_GAP) < PAINT_HALF_WIDTH] = MARK_YELLOW
        return mark
