"""Appearance of the world: a base colour per class, procedural texture in world coordinates,
Lambert shading from the scene's sun, lane paint, façade windows, a sky gradient and haze.
Chosen so that both the class and the distance of a surface can be learned from pixels, and
the LiDAR intensity of a return."""

from __future__ import annotations

import numpy as np

from renderlss.synthetic.world import MARK_WHITE, MARK_YELLOW

# Base colour (linear RGB in [0, 1]) and LiDAR reflectivity per lidarseg category; texture
# cell size (m) per category. Unlisted categories are grey.
APPEARANCE = {
    "flat.driveable_surface": ((0.30, 0.30, 0.32), 0.15, 0.35),
    "flat.sidewalk": ((0.62, 0.60, 0.56), 0.25, 1.5),
    "flat.terrain": ((0.36, 0.45, 0.22), 0.20, 0.5),
    "flat.other": ((0.55, 0.38, 0.30), 0.25, 0.8),
    "static.manmade": ((0.70, 0.62, 0.52), 0.30, 1.2),
    "static.vegetation": ((0.15, 0.42, 0.15), 0.15, 0.3),
    "static.other": ((0.45, 0.30, 0.18), 0.30, 0.3),
    "static_object.bicycle_rack": ((0.55, 0.55, 0.60), 0.50, 0.2),
    "movable_object.barrier": ((0.90, 0.85, 0.80), 0.60, 0.4),
    "movable_object.trafficcone": ((0.95, 0.45, 0.05), 0.80, 0.2),
    "movable_object.pushable_pullable": ((0.15, 0.35, 0.20), 0.30, 0.2),
    "vehicle.car": ((0.60, 0.10, 0.10), 0.40, 0.6),
    "vehicle.truck": ((0.85, 0.85, 0.88), 0.40, 0.8),
    "vehicle.bus.rigid": ((0.95, 0.75, 0.10), 0.40, 1.0),
    "vehicle.trailer": ((0.30, 0.40, 0.70), 0.40, 1.0),
    "vehicle.construction": ((0.95, 0.60, 0.05), 0.40, 0.6),
    "vehicle.motorcycle": ((0.10, 0.10, 0.15), 0.40, 0.2),
    "vehicle.bicycle": ((0.10, 0.55, 0.85), 0.40, 0.2),
    "human.pedestrian.adult": ((0.80, 0.55, 0.45), 0.20, 0.15),
    "human.pedestrian.child": ((0.85, 0.65, 0.40), 0.20, 0.15),
    "human.pedestrian.construction_worker": ((0.95, 0.90, 0.10), 0.50, 0.15),
    "vehicle.ego": ((0.80, 0.80, 0.80), 0.40, 1.0),
}
DEFAULT_APPEARANCE = ((0.5, 0.5, 0.5), 0.3, 0.5)
# Cars get one of these paints each (by actor index); other objects vary in brightness.
CAR_PAINTS = np.array(
    [
        (0.60, 0.10, 0.10),
        (0.15, 0.20, 0.50),
        (0.80, 0.80, 0.82),
        (0.12, 0.12, 0.13),
        (0.45, 0.47, 0.50),
        (0.20, 0.40, 0.25),
        (0.85, 0.70, 0.20),
    ]
)
ACTOR_BRIGHTNESS = (0.85, 1.15)
PAINT_COLOURS = {MARK_WHITE: (0.92, 0.92, 0.90), MARK_YELLOW: (0.90, 0.75, 0.15)}
PAINT_REFLECTIVITY = 0.9
SKY_HORIZON = np.array([0.80, 0.85, 0.92])
SKY_ZENITH = np.array([0.30, 0.50, 0.85])
HAZE_DISTANCE = 250.0  # metres; contrast halves after ~0.7 of this
AMBIENT, DIFFUSE = 0.45, 0.65
WINDOW_COLOUR = np.array([0.20, 0.25, 0.32])
FLOOR_HEIGHT, WINDOW_PITCH = 3.2, 2.4
MAX_INTENSITY = 255.0


def appearance_tables(category_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lidarseg index: colour [C, 3], reflectivity [C], texture cell size [C]."""
    rows = [APPEARANCE.get(name, DEFAULT_APPEARANCE) for name in category_names]
    colour = np.array([r[0] for r in rows], dtype=np.float64)
    return colour, np.array([r[1] for r in rows]), np.array([r[2] for r in rows])


def cell_noise(points: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """[N] reproducible noise in [0, 1): a hash of the cell of size ``cell`` [N] holding each
    point [N, 3]."""
    idx = np.floor(points / cell[:, None]).astype(np.int64)
    h = idx[:, 0] * 73856093 ^ idx[:, 1] * 19349663 ^ idx[:, 2] * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF) / 65536.0


def texture(points: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """[N] brightness factor around 1 from two octaves of cell noise."""
    fine = cell_noise(points, cell)
    coarse = cell_noise(points + 0.37, 4.0 * cell)
    return 0.75 + 0.3 * fine + 0.2 * coarse


def facade_windows(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """[N] bool: the point lies on a window of a vertical façade (above the ground floor)."""
    along = -normals[:, 1] * points[:, 0] + normals[:, 0] * points[:, 1]
    vertical = np.abs(normals[:, 2]) < 0.5
    storey = np.mod(points[:, 2] / FLOOR_HEIGHT, 1.0)
    column = np.mod(along / WINDOW_PITCH, 1.0)
    return (
        vertical
        & (points[:, 2] > FLOOR_HEIGHT)
        & (storey > 0.35)
        & (storey < 0.8)
        & (column > 0.2)
        & (column < 0.75)
    )


def actor_colours(base: np.ndarray, labels: np.ndarray, actor: np.ndarray, car: int) -> np.ndarray:
    """[N, 3] base colours varied per object: a paint per car, a brightness per other object.

    Args:
        base: [N, 3] class colours; labels: [N] lidarseg index; actor: [N] (-1: no object).
    """
    owner = np.maximum(actor, 0)
    spread = cell_noise(np.stack([owner, owner, owner], 1).astype(np.float64), np.ones(len(owner)))
    lo, hi = ACTOR_BRIGHTNESS
    colour = np.where((actor >= 0)[:, None], base * (lo + (hi - lo) * spread)[:, None], base)
    cars = labels == car
    colour[cars] = CAR_PAINTS[owner[cars] % len(CAR_PAINTS)]
    return colour


def shade_surface(
    points: np.ndarray,
    normals: np.ndarray,
    labels: np.ndarray,
    actor: np.ndarray,
    marking: np.ndarray,
    sun: np.ndarray,
    category_names: list[str],
) -> np.ndarray:
    """[N, 3] colour in [0, 1] of surface points.

    Args:
        points, normals: [N, 3] global; labels: [N] lidarseg index; actor: [N] owning object
        (-1: ground); marking: [N] paint (MARK_*); sun: [3] unit direction towards the sun.
    """
    colour_table, _, cell_table = appearance_tables(category_names)
    base = actor_colours(colour_table[labels], labels, actor, category_names.index("vehicle.car"))
    colour = base * texture(points, cell_table[labels])[:, None]
    for mark, paint in PAINT_COLOURS.items():
        colour[marking == mark] = paint
    manmade = labels == category_names.index("static.manmade")
    windows = manmade & facade_windows(points, normals)
    colour[windows] = WINDOW_COLOUR
    light = AMBIENT + DIFFUSE * np.clip(normals @ sun, 0.0, None)
    return np.clip(colour * light[:, None], 0.0, 1.0)


def sky_colour(dirs: np.ndarray) -> np.ndarray:
    """[N, 3] sky seen along global directions [N, 3]: horizon haze to blue zenith."""
    up = np.clip(dirs[:, 2] / np.linalg.norm(dirs, axis=-1), 0.0, 1.0)
    blend = np.sqrt(up)[:, None]
    return SKY_HORIZON * (1.0 - blend) + SKY_ZENITH * blend


def add_haze(colour: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """[N, 3] colour faded towards the horizon colour with distance [N] (metres)."""
    fade = (1.0 - np.exp(-distance / HAZE_DISTANCE))[:, None]
    return colour * (1.0 - fade) + SKY_HORIZON * fade


def lidar_intensity(
    labels: np.ndarray,
    normals: np.ndarray,
    dirs: np.ndarray,
    marking: np.ndarray,
    category_names: list[str],
) -> np.ndarray:
    """[N] return intensity in [0, 255]: reflectivity times the cosine of incidence."""
    _, reflectivity, _ = appearance_tables(category_names)
    refl = np.where(marking != 0, PAINT_REFLECTIVITY, reflectivity[labels])
    unit = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    cosine = np.abs(np.sum(unit * normals, axis=-1))
    return np.round(MAX_INTENSITY * refl * cosine)
