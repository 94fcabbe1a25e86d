"""Procedural street layouts: one random but reproducible street per scene.

Objects are placed along lines parallel to the road (``|d|`` fixed per line) with gaps, so
nothing overlaps: each line has its own kinds of objects, and moving lines share one speed,
so actors never run into each other. Every Occ3D class appears near the ego path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from renderlss.synthetic.road import Road
from renderlss.synthetic.world import (
    LANE_EDGE,
    LANE_WIDTH,
    ROAD_EDGE,
    SIDEWALK_EDGE,
    Actor,
    EgoMotion,
    SceneWorld,
)

Part = tuple[tuple[float, float, float], tuple[float, float, float]]

# Lateral lines (|d|, metres) of the street furniture, see the cross-section in world.py.
PARKING_LINE = 0.5 * (LANE_EDGE + ROAD_EDGE) + 0.1
BIKE_LINE = LANE_EDGE - 0.25
POLE_LINE = ROAD_EDGE + 0.35
WALK_LINES = (ROAD_EDGE + 1.2, ROAD_EDGE + 2.0)
FURNITURE_LINE = SIDEWALK_EDGE - 0.4
TREE_LINE = SIDEWALK_EDGE + 1.1
HEDGE_LINE = SIDEWALK_EDGE + 2.8
BUILDING_FRONT = SIDEWALK_EDGE + 4.5
YARD_DEPTH = BUILDING_FRONT - SIDEWALK_EDGE


def _box(length: float, width: float, height: float, x: float = 0.0, z0: float = 0.0) -> Part:
    """A part of given size whose bottom is at ``z0`` and centre at ``x`` along the heading."""
    return (x, 0.0, z0 + 0.5 * height), (0.5 * length, 0.5 * width, 0.5 * height)


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# Each builder returns (category, (w, l, h), parts) for a random instance of its kind.
Kind = tuple[str, tuple[float, float, float], tuple[Part, ...]]


def car(rng: np.random.Generator) -> Kind:
    length, width, height = (
        _uniform(rng, 4.2, 4.9),
        _uniform(rng, 1.8, 2.0),
        _uniform(rng, 1.45, 1.7),
    )
    body = _box(length, width, 0.6 * height)
    cabin = _box(0.5 * length, 0.86 * width, 0.4 * height, x=-0.05 * length, z0=0.6 * height)
    return "vehicle.car", (width, length, height), (body, cabin)


def truck(rng: np.random.Generator) -> Kind:
    length, width, height = (
        _uniform(rng, 6.5, 9.0),
        _uniform(rng, 2.3, 2.5),
        _uniform(rng, 3.0, 3.6),
    )
    cab = _box(0.24 * length, width, 0.8 * height, x=0.38 * length)
    cargo = _box(0.74 * length, width, height, x=-0.13 * length)
    return "vehicle.truck", (width, length, height), (cab, cargo)


def bus(rng: np.random.Generator) -> Kind:
    length, width, height = (
        _uniform(rng, 10.5, 12.5),
        _uniform(rng, 2.5, 2.6),
        _uniform(rng, 3.0, 3.3),
    )
    return "vehicle.bus.rigid", (width, length, height), (_box(length, width, height),)


def trailer(rng: np.random.Generator) -> Kind:
    length, width, height = (
        _uniform(rng, 8.0, 11.0),
        _uniform(rng, 2.4, 2.5),
        _uniform(rng, 3.4, 3.9),
    )
    return "vehicle.trailer", (width, length, height), (_box(length, width, height),)


def construction_vehicle(rng: np.random.Generator) -> Kind:
    length, width, height = (
        _uniform(rng, 5.0, 7.0),
        _uniform(rng, 2.4, 2.7),
        _uniform(rng, 2.8, 3.4),
    )
    base = _box(length, width, 0.45 * height)
    cab = _box(0.45 * length, 0.9 * width, 0.55 * height, x=-0.2 * length, z0=0.45 * height)
    return "vehicle.construction", (width, length, height), (base, cab)


def motorcycle(rng: np.random.Generator) -> Kind:
    length, width, height = (
        _uniform(rng, 2.0, 2.2),
        _uniform(rng, 0.7, 0.9),
        _uniform(rng, 1.4, 1.6),
    )
    return "vehicle.motorcycle", (width, length, height), (_box(length, width, height),)


def bicycle(rng: np.random.Generator, with_rider: bool) -> Kind:
    length, width = _uniform(rng, 1.65, 1.8), _uniform(rng, 0.55, 0.65)
    height = _uniform(rng, 1.6, 1.8) if with_rider else _uniform(rng, 1.0, 1.15)
    return "vehicle.bicycle", (width, length, height), (_box(length, width, height),)


def pedestrian(rng: np.random.Generator, category: str = "human.pedestrian.adult") -> Kind:
    child = category == "human.pedestrian.child"
    height = _uniform(rng, 1.1, 1.35) if child else _uniform(rng, 1.6, 1.9)
    length, width = _uniform(rng, 0.5, 0.7), _uniform(rng, 0.55, 0.7)
    legs = _box(0.7 * length, 0.7 * width, 0.45 * height)
    torso = _box(length, width, 0.55 * height, z0=0.45 * height)
    return category, (width, length, height), (legs, torso)


def barrier(rng: np.random.Generator) -> Kind:
    length, width, height = (
        _uniform(rng, 1.6, 2.4),
        _uniform(rng, 0.4, 0.55),
        _uniform(rng, 0.9, 1.1),
    )
    return "movable_object.barrier", (width, length, height), (_box(length, width, height),)


def traffic_cone(rng: np.random.Generator) -> Kind:
    side, height = _uniform(rng, 0.35, 0.45), _uniform(rng, 0.7, 1.0)
    return "movable_object.trafficcone", (side, side, height), (_box(side, side, height),)


def bicycle_rack(rng: np.random.Generator) -> Kind:
    length, height = _uniform(rng, 2.5, 4.5), _uniform(rng, 0.8, 1.0)
    return "static_object.bicycle_rack", (0.6, length, height), (_box(length, 0.6, height),)


def waste_bin(rng: np.random.Generator) -> Kind:
    side, height = _uniform(rng, 0.55, 0.75), _uniform(rng, 1.0, 1.2)
    return "movable_object.pushable_pullable", (side, side, height), (_box(side, side, height),)


def bench(rng: np.random.Generator) -> Kind:
    length = _uniform(rng, 1.6, 2.2)
    seat = _box(length, 0.6, 0.5)
    back = _box(length, 0.12, 0.45, z0=0.5)
    back = ((0.0, -0.24, back[0][2]), back[1])
    return "static.other", (0.6, length, 0.95), (seat, back)


def tree(rng: np.random.Generator) -> Kind:
    trunk_h, crown_w = _uniform(rng, 2.4, 3.5), _uniform(rng, 2.5, 4.0)
    crown_h = _uniform(rng, 2.5, 4.5)
    trunk = _box(0.35, 0.35, trunk_h)
    crown = _box(crown_w, crown_w * _uniform(rng, 0.8, 1.0), crown_h, z0=trunk_h)
    return "static.vegetation", (crown_w, crown_w, trunk_h + crown_h), (trunk, crown)


def hedge(rng: np.random.Generator) -> Kind:
    length, height = _uniform(rng, 3.0, 9.0), _uniform(rng, 0.8, 1.4)
    return "static.vegetation", (0.9, length, height), (_box(length, 0.9, height),)


def lamp_post(rng: np.random.Generator) -> Kind:
    height = _uniform(rng, 6.0, 8.0)
    pole = _box(0.25, 0.25, height)
    # The arm reaches over the road: +y of a roadside object points to the road (_place_line).
    arm = ((0.0, 0.9, height - 0.1), (0.1, 1.0, 0.1))
    return "static.manmade", (0.25, 2.0, height), (pole, arm)


def traffic_sign(rng: np.random.Generator) -> Kind:
    height = _uniform(rng, 2.2, 2.8)
    pole = _box(0.1, 0.1, height)
    board = _box(0.05, 0.7, 0.7, z0=height)
    return "static.manmade", (0.7, 0.1, height + 0.7), (pole, board)


def building(rng: np.random.Generator) -> Kind:
    length, depth = _uniform(rng, 8.0, 28.0), _uniform(rng, 8.0, 16.0)
    height = _uniform(rng, 4.0, 22.0)
    return "static.manmade", (depth, length, height), (_box(length, depth, height),)


def wall(rng: np.random.Generator) -> Kind:
    length, height = _uniform(rng, 4.0, 12.0), _uniform(rng, 1.2, 2.2)
    return "static.manmade", (0.3, length, height), (_box(length, 0.3, height),)


ANNOTATED_PREFIXES = ("vehicle.", "human.", "movable_object.", "static_object.")


def _attribute(category: str, speed: float) -> str:
    moving = abs(speed) > 0.0
    if category in ("vehicle.bicycle", "vehicle.motorcycle"):
        return "cycle.with_rider" if moving else "cycle.without_rider"
    if category.startswith("vehicle."):
        return "vehicle.moving" if moving else "vehicle.parked"
    if category.startswith("human."):
        return "pedestrian.moving" if moving else "pedestrian.standing"
    return ""


def _actor(kind: Kind, s: float, d: float, rel_yaw: float, speed: float) -> Actor:
    category, size, parts = kind
    annotated = category.startswith(ANNOTATED_PREFIXES)
    return Actor(
        category, s, d, rel_yaw, speed, size, parts, annotated, _attribute(category, speed)
    )


def _place_line(
    rng: np.random.Generator,
    builders: list[tuple[float, Callable[[np.random.Generator], Kind]]],
    s_range: tuple[float, float],
    d: float,
    gap: tuple[float, float],
    rel_yaw: float = 0.0,
    speed: float = 0.0,
    reserved: list[tuple[float, float]] | tuple = (),
    align_depth: bool = False,
) -> list[Actor]:
    """Objects one after the other along the line ``d``, with random gaps.

    ``builders`` are (weight, builder) pairs; an object overlapping a ``reserved`` s-interval
    is skipped. With ``align_depth`` the box's near face (not its centre) lies on ``d``.
    """
    weights = np.array([w for w, _ in builders], dtype=np.float64)
    weights /= weights.sum()
    out = []
    s = s_range[0] + _uniform(rng, 0.0, gap[1])
    while s < s_range[1]:
        kind = builders[int(rng.choice(len(builders), p=weights))][1](rng)
        length = kind[1][1]
        lo, hi = s, s + length
        free = all(hi <= r_lo or lo >= r_hi for r_lo, r_hi in reserved)
        if free:
            centre_d = d + np.sign(d) * 0.5 * kind[1][0] if align_depth else d
            # Objects on the left side (d > 0) turn round so "their right" faces the road.
            yaw = rel_yaw + (np.pi if d > 0 and speed == 0.0 else 0.0)
            out.append(_actor(kind, s + 0.5 * length, float(centre_d), yaw, speed))
        s = hi + _uniform(rng, *gap)
    return out


def _forced(
    rng: np.random.Generator, lo: float, hi: float
) -> tuple[list[Actor], dict[float, list[tuple[float, float]]], list[tuple]]:
    """A construction site and a bus stop near the ego path, so every class is present.

    Returns the actors, the reserved s-intervals per side, and the flat.other patches.
    """
    side = float(rng.choice([-1.0, 1.0]))
    site_lo = _uniform(rng, lo, hi)
    site = (site_lo, site_lo + 16.0)
    yaw = np.pi if side > 0 else 0.0
    actors = [
        _actor(construction_vehicle(rng), site_lo + 8.0, side * (SIDEWALK_EDGE + 2.3), yaw, 0.0),
        _actor(
            pedestrian(rng, "human.pedestrian.construction_worker"),
            site_lo + 13.0,
            side * (SIDEWALK_EDGE + 2.0),
            yaw,
            0.0,
        ),
    ]
    s = site_lo + 0.3
    while s < site[1] - 2.0:
        b = barrier(rng)
        actors.append(_actor(b, s + 0.5 * b[1][1], side * (SIDEWALK_EDGE + 0.5), yaw, 0.0))
        s += b[1][1] + 0.3
    for k in range(4):
        actors.append(
            _actor(traffic_cone(rng), site_lo + 2.0 + 4.0 * k, side * PARKING_LINE, 0.0, 0.0)
        )
    # A parked trailer and a bus at a stop on the other side.
    stop_lo = _uniform(rng, lo, hi)
    actors.append(_actor(trailer(rng), stop_lo + 6.0, -side * PARKING_LINE, 0.0, 0.0))
    actors.append(_actor(bus(rng), stop_lo + 20.0, -side * PARKING_LINE, 0.0, 0.0))
    reserved_same = [(site[0] - 1.0, site[1] + 1.0)]
    reserved_other = [(stop_lo, stop_lo + 27.0)]
    patches = [(side, site[0], site[1], YARD_DEPTH)]
    return actors, {side: reserved_same, -side: reserved_other}, patches


def _ego_motion(rng: np.random.Generator) -> EgoMotion:
    """The ego's drive along its lane: speed and a sinusoidal weave."""
    return EgoMotion(
        s0=0.0,
        d=-0.5 * LANE_WIDTH,
        v0=_uniform(rng, 4.0, 8.0),
        amp=_uniform(rng, 0.5, 2.0),
        omega=_uniform(rng, 0.4, 1.0),
        phase=_uniform(rng, 0.0, 2 * np.pi),
    )


def _road(rng: np.random.Generator, scene_index: int) -> Road:
    """A straight or gently curved road, placed apart from the other scenes' roads."""
    curvature = float(rng.choice([0.0, 1.0])) * _uniform(rng, -1 / 250, 1 / 250)
    return Road(
        origin=(2000.0 * scene_index + _uniform(rng, -500, 500), _uniform(rng, -500, 500)),
        heading=_uniform(rng, -np.pi, np.pi),
        curvature=curvature,
    )


def _roadside(
    rng: np.random.Generator,
    side: float,
    s_range: tuple[float, float],
    sidewalk_reserved: list[tuple[float, float]],
    patches: list[tuple[float, float, float, float]],
) -> list[Actor]:
    """Everything along one side of the road (``side`` = -1 right, +1 left): yards (added to
    ``patches``), parked vehicles, poles, furniture, trees, hedges, buildings and walking
    pedestrians."""
    # Yards of flat.other (forecourts, car parks) between some buildings and the sidewalk.
    s = s_range[0]
    while s < s_range[1]:
        s += _uniform(rng, 20.0, 60.0)
        width = _uniform(rng, 6.0, 14.0)
        patches.append((side, s, s + width, YARD_DEPTH))
        s += width
    yards_taken = sidewalk_reserved + [(p[1], p[2]) for p in patches if p[0] == side]
    actors = _place_line(
        rng,
        [(6, car), (1, truck), (0.6, lambda r: bicycle(r, False))],
        s_range,
        side * PARKING_LINE,
        (1.0, 9.0),
        reserved=sidewalk_reserved,
    )
    actors += _place_line(
        rng, [(3, lamp_post), (1, traffic_sign)], s_range, side * POLE_LINE, (12.0, 25.0)
    )
    actors += _place_line(
        rng,
        [
            (2, bench),
            (2, waste_bin),
            (1, bicycle_rack),
            (2, pedestrian),
            (1, lambda r: pedestrian(r, "human.pedestrian.child")),
        ],
        s_range,
        side * FURNITURE_LINE,
        (3.0, 15.0),
        reserved=sidewalk_reserved,
    )
    actors += _place_line(
        rng, [(1, tree)], s_range, side * TREE_LINE, (3.0, 9.0), reserved=yards_taken
    )
    actors += _place_line(
        rng, [(1, hedge)], s_range, side * HEDGE_LINE, (2.0, 12.0), reserved=yards_taken
    )
    actors += _place_line(
        rng,
        [(5, building), (1, wall)],
        s_range,
        side * (BUILDING_FRONT + _uniform(rng, 0.0, 3.0)),
        (1.0, 8.0),
        align_depth=True,
    )
    # Pedestrians walking on the sidewalk: one walking direction per line.
    for k, line in enumerate(WALK_LINES):
        speed = _uniform(rng, 0.9, 1.6) * (1 if k == 0 else -1)
        actors += _place_line(
            rng,
            [(1, pedestrian)],
            (s_range[0] - 10, s_range[1]),
            side * line,
            (4.0, 20.0),
            rel_yaw=0.0 if speed > 0 else np.pi,
            speed=speed,
        )
    return actors


def _traffic(
    rng: np.random.Generator, s_range: tuple[float, float], duration: float
) -> list[Actor]:
    """Moving traffic: the ego lane stays empty; other lanes move at one speed each."""
    lanes = (
        (-1.5 * LANE_WIDTH, _uniform(rng, 8.0, 12.0), [(6, car), (1, truck), (1, bus)]),
        (0.5 * LANE_WIDTH, -_uniform(rng, 6.0, 11.0), [(6, car), (1, motorcycle)]),
        (
            1.5 * LANE_WIDTH,
            -_uniform(rng, 6.0, 11.0),
            [(6, car), (1, truck), (1, bus), (1, motorcycle)],
        ),
        (-BIKE_LINE, _uniform(rng, 3.0, 5.0), [(1, lambda r: bicycle(r, True))]),
    )
    actors: list[Actor] = []
    for d, speed, builders in lanes:
        # Start far enough back that the lane is full around the ego during the scene.
        travel = speed * duration
        gap = (6.0, 30.0) if abs(speed) > 5 else (10.0, 40.0)
        actors += _place_line(
            rng,
            builders,
            (s_range[0] - max(travel, 0.0), s_range[1] - min(travel, 0.0)),
            d,
            gap,
            rel_yaw=0.0 if speed > 0 else np.pi,
            speed=speed,
        )
    return actors


def _sun(rng: np.random.Generator) -> np.ndarray:
    """[3] unit direction towards the sun (ego-independent, world frame)."""
    sun_azimuth, sun_elevation = _uniform(rng, -np.pi, np.pi), _uniform(rng, 0.5, 1.1)
    return np.array(
        [
            np.cos(sun_elevation) * np.cos(sun_azimuth),
            np.cos(sun_elevation) * np.sin(sun_azimuth),
            np.sin(sun_elevation),
        ]
    )


def build_scene(
    name: str, seed: int, scene_index: int, duration: float, category_index: dict[str, int]
) -> SceneWorld:
    """A random street for scene ``scene_index`` of dataset ``seed``.

    ``duration`` (seconds) is how long the ego drives; the street covers its path with
    margin so that all sensors see a full street at every instant.
    """
    rng = np.random.default_rng([seed, scene_index])
    ego = _ego_motion(rng)
    path_end = float(ego.arc_length(np.array([duration]))[0])
    s_range = (-80.0, path_end + 100.0)
    road = _road(rng, scene_index)
    actors, reserved, patches = _forced(rng, 10.0, max(path_end, 20.0) + 15.0)
    for side in (-1.0, 1.0):
        actors += _roadside(rng, side, s_range, reserved[side], patches)
    actors += _traffic(rng, s_range, duration)
    return SceneWorld(
        name=name,
        road=road,
        actors=actors,
        flat_patches=np.array(patches, dtype=np.float64).reshape(-1, 4),
        ego=ego,
        sun=_sun(rng),
        category_index=category_index,
    )
