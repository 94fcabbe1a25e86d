"""Pictures: colour maps against table values, panels by structure and colours present,
occupancy views against hand cases and a sequential painter's algorithm."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from renderlss.geometry.grid import VoxelGrid
from renderlss.vis import save_png
from renderlss.vis.colormaps import (
    DIVERGING_TABLE,
    FREE_COLOUR,
    OCC3D_CLASS_COLOURS,
    VIRIDIS_TABLE,
    class_colour,
    depth_to_rgb,
    error_to_rgb,
    label_palette,
    labels_to_rgb,
    signed_relative_error,
)
from renderlss.vis.occupancy_views import (
    EGO_MARKER_FILL,
    FACE_SHADES,
    bev_view,
    cube_sprite,
    oblique_axes,
    perspective_view,
)
from renderlss.vis.panels import (
    depth_panel,
    format_tick,
    nice_ticks,
    semantic_panel,
    spread_sparse_points,
    tile_panels,
)

NAMES = list(OCC3D_CLASS_COLOURS)  # the 17 Occ3D classes, free = 17
FREE = len(NAMES)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of [..., 3] uint8."""
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def has_colour(picture: np.ndarray, colour, tolerance: int = 0) -> bool:
    difference = np.abs(picture.astype(np.int64) - np.asarray(colour, dtype=np.int64))
    return bool(np.any(np.all(difference <= tolerance, axis=-1)))


# ----------------------------------------------------------------------------- colour maps


def test_depth_colours_ends_middle_and_beyond():
    rgb = depth_to_rgb(np.array([2.0, 10.0, 18.0, 0.5, 100.0]), d_min=2.0, d_max=18.0)
    assert rgb.dtype == np.uint8
    assert rgb[0].tolist() == VIRIDIS_TABLE[-1].tolist()  # near: bright end
    assert rgb[1].tolist() == VIRIDIS_TABLE[8].tolist()  # middle of 17 stops: stop 8
    assert rgb[2].tolist() == VIRIDIS_TABLE[0].tolist()  # far: dark end
    assert rgb[3].tolist() == rgb[0].tolist() and rgb[4].tolist() == rgb[2].tolist()  # clipped


def test_depth_luminance_falls_monotonically_with_depth():
    # 1 m apart: luma changes by more than uint8 rounding can undo (at most 1)
    rgb = depth_to_rgb(np.linspace(1.0, 45.0, 45), 1.0, 45.0)
    assert np.all(np.diff(luma(rgb)) < -1.0)
    assert luma(rgb[0]) - luma(rgb[-1]) > 150


def test_invalid_depth_is_black_and_valid_never_is():
    rgb = depth_to_rgb(np.array([0.0, np.nan, -3.0, np.inf, 45.0]), 1.0, 45.0)
    assert rgb[:4].tolist() == [[0, 0, 0]] * 4
    assert rgb[4].sum() > 0
    with pytest.raises(ValueError, match="d_min < d_max"):
        depth_to_rgb(np.ones(2), 5.0, 5.0)


def test_signed_relative_error_and_error_colours():
    target = np.array([10.0, 10.0, 0.0, 4.0, np.nan])
    rendered = np.array([12.0, 7.0, 5.0, 0.0, 3.0])
    error = signed_relative_error(target, rendered)
    np.testing.assert_allclose(error[:2], [0.2, -0.3])
    assert np.all(np.isnan(error[2:]))
    rgb = error_to_rgb(np.array([0.0, 0.5, -0.5, 2.0, np.nan]), limit=0.5)
    assert rgb[0].tolist() == DIVERGING_TABLE[len(DIVERGING_TABLE) // 2].tolist()  # white-ish
    assert rgb[1].tolist() == DIVERGING_TABLE[-1].tolist()  # too far: red end
    assert rgb[2].tolist() == DIVERGING_TABLE[0].tolist()  # too near: blue end
    assert rgb[3].tolist() == rgb[1].tolist()  # saturated
    assert rgb[4].tolist() == [0, 0, 0]
    assert rgb[1, 0] > rgb[1, 2] and rgb[2, 2] > rgb[2, 0]


def test_class_palette_known_unknown_free_ignore():
    assert class_colour("car") == (0, 150, 245)
    unknown = class_colour("hovercraft")
    assert unknown == class_colour("hovercraft") != class_colour("zeppelin")
    assert all(40 <= c <= 215 for c in unknown)
    palette = label_palette(["car", "hovercraft"], ignore_index=255)
    assert palette[0].tolist() == [0, 150, 245] and palette[1].tolist() == list(unknown)
    assert palette[2].tolist() == list(FREE_COLOUR) and palette[255].tolist() == [0, 0, 0]
    labels = np.array([[0, 2], [255, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(labels_to_rgb(labels, ["car", "hovercraft"]), palette[labels])
    with pytest.raises(ValueError, match="rendered_sem: class indices \\[7\\]"):
        labels_to_rgb(np.array([7]), ["car"], field="rendered_sem")


# ---------------------------------------------------------------------------- panel pieces


def test_nice_ticks_hand_cases():
    np.testing.assert_allclose(nice_ticks(1.0, 45.0, 6), [10, 20, 30, 40])
    np.testing.assert_allclose(nice_ticks(1.0, 45.0, 10), [5, 10, 15, 20, 25, 30, 35, 40, 45])
    np.testing.assert_allclose(nice_ticks(0.0, 1.0, 5), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(nice_ticks(-50.0, 50.0, 5), [-40, -20, 0, 20, 40])
    assert format_tick(0.5, 0.5) == "0.5" and format_tick(20.0, 10.0) == "20"
    assert format_tick(-1e-17, 0.2) == "0"


def test_spread_sparse_points_matches_brute_force():
    rng = np.random.default_rng(3)
    depth = rng.uniform(1.0, 50.0, (9, 11))
    valid = rng.random((9, 11)) < 0.15
    radius = 2
    source = spread_sparse_points(depth, valid, radius)
    for i in range(9):
        for j in range(11):
            if valid[i, j]:
                assert source[i, j] == i * 11 + j
                continue
            candidates = [
                (depth[a, b], a * 11 + b)
                for a in range(9)
                for b in range(11)
                if valid[a, b] and (a - i) ** 2 + (b - j) ** 2 <= radius**2
            ]
            assert source[i, j] == (min(candidates)[1] if candidates else -1)


def make_image(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 128, dtype=np.uint8)


def test_depth_panel_layout_scales_with_four_tiles():
    sizes = {}
    for width in (40, 60):
        target = np.full((30, width), 20.0)
        panel = depth_panel(make_image(30, width), target, target, 1.0, 45.0, font_size=10)
        assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[2] == 3
        sizes[width] = panel.shape
    assert sizes[60][1] - sizes[40][1] == 4 * 20  # four tiles side by side
    assert sizes[60][0] == sizes[40][0]


def test_depth_panel_contains_image_and_colour_bars():
    grey = np.random.default_rng(0).integers(0, 256, (36, 64, 1), dtype=np.uint8)
    image = np.repeat(grey, 3, axis=2)  # grey, so never close to a colour map's ends
    target = np.full((36, 64), 20.0)  # one depth: the tiles show a single map colour
    panel = depth_panel(image, target, target, 1.0, 45.0, font_size=10)
    rows = [r for r in range(panel.shape[0] - 35) if np.array_equal(panel[r : r + 36, :64], image)]
    assert len(rows) == 1  # the camera image, unchanged, in the first tile
    below = panel[rows[0] + 36 :]
    # Only the colour bars can hold (nearly) the ends of both maps, and black tick labels;
    # bar columns show the value at their centre, hence the tolerance.
    for end in (VIRIDIS_TABLE[0], VIRIDIS_TABLE[-1], DIVERGING_TABLE[0], DIVERGING_TABLE[-1]):
        assert has_colour(below, end, tolerance=16)
        assert not has_colour(panel[: rows[0] + 36], end, tolerance=16)
    assert has_colour(below, (0, 0, 0))


def test_depth_panel_shows_sparse_points_as_discs_but_keeps_dense_holes():
    image = make_image(60, 80)
    target = np.zeros((60, 80))
    target[[10, 30, 50], [20, 40, 60]] = 5.0
    rendered = np.full((60, 80), 40.0)
    panel = depth_panel(image, target, rendered, 1.0, 45.0, point_radius=2, font_size=10)
    point_colour = depth_to_rgb(np.array([5.0]), 1.0, 45.0)[0]
    count = np.all(panel == point_colour, axis=-1).sum()
    assert count == 3 * 13  # three discs of radius 2 (13 pixels each)

    dense = np.full((60, 80), 5.0)
    dense[20, 20] = 0.0  # a single hole in a dense map stays visible
    panel = depth_panel(image, dense, rendered, 1.0, 45.0, font_size=10)
    assert np.all(panel == point_colour, axis=-1).sum() == 60 * 80 - 1


def test_depth_panel_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="rendered_depth shape"):
        depth_panel(make_image(8, 8), np.ones((8, 8)), np.ones((4, 4)), 1.0, 45.0)
    with pytest.raises(ValueError, match="image: expected uint8"):
        depth_panel(np.zeros((8, 8, 3)), np.ones((8, 8)), np.ones((8, 8)), 1.0, 45.0)


def test_semantic_panel_legend_lists_present_or_all_classes():
    image = make_image(40, 60)
    target = np.full((40, 60), NAMES.index("driveable_surface"), dtype=np.uint8)
    target[:10] = 255
    rendered = target.copy()
    rendered[20:30, 20:30] = NAMES.index("car")
    bus = OCC3D_CLASS_COLOURS["bus"]

    present = semantic_panel(image, target, rendered, NAMES, font_size=10)
    wider = semantic_panel(make_image(40, 80), target, rendered, NAMES, font_size=10)
    assert wider.shape[1] - present.shape[1] == 3 * 20  # three tiles side by side
    assert not has_colour(present, bus)
    # The car's colour appears in the rendered tile and as a legend swatch below the tiles.
    car_rows = np.nonzero(np.all(present == OCC3D_CLASS_COLOURS["car"], axis=-1).any(axis=1))[0]
    assert car_rows.max() > 40

    every = semantic_panel(image, target, rendered, NAMES, legend="all", font_size=10)
    for name in NAMES:
        assert has_colour(every, OCC3D_CLASS_COLOURS[name]), name


def test_semantic_panel_resizes_maps_to_the_image():
    image = make_image(40, 60)
    target = np.array([[1, 4], [4, 1]], dtype=np.uint8)
    panel = semantic_panel(image, target, target, NAMES, font_size=10)
    barrier = np.all(panel == OCC3D_CLASS_COLOURS["barrier"], axis=-1)
    assert barrier.sum() >= 2 * 2 * 20 * 30  # two quadrants in each of the two tiles


def test_tile_panels_grid():
    a = np.full((10, 20, 3), 1, dtype=np.uint8)
    b = np.full((14, 16, 3), 2, dtype=np.uint8)
    c = np.full((6, 6, 3), 3, dtype=np.uint8)
    grid = tile_panels([a, b, c], columns=2, gap=4)
    assert grid.shape == (2 * 14 + 4, 2 * 20 + 4, 3)
    np.testing.assert_array_equal(grid[:10, :20], a)
    np.testing.assert_array_equal(grid[:14, 24:40], b)
    np.testing.assert_array_equal(grid[18:24, :6], c)
    assert np.all(grid[18:, 24:] == 255)


# ------------------------------------------------------------------------- occupancy views


def test_bev_view_picks_the_top_voxel_in_picture_orientation():
    names = ["car", "pedestrian", "driveable_surface"]
    free = len(names)
    semantics = np.full((3, 2, 4), free, dtype=np.uint8)
    semantics[0, 0, 0], semantics[0, 0, 2] = 2, 0  # car on the road: car on top
    semantics[2, 1, 1], semantics[2, 1, 3] = 1, 255  # ignore above a pedestrian
    semantics[1, 1, 3] = 2
    view = bev_view(semantics, free, names, pixels_per_voxel=1, height_shading=0.0)
    palette = label_palette(names)
    assert view.shape == (3, 2, 3)
    # picture (row, col) = voxel (x = X-1-row, y = Y-1-col)
    assert view[2, 1].tolist() == palette[0].tolist()  # voxel (0, 0)
    assert view[0, 0].tolist() == palette[1].tolist()  # voxel (2, 1)
    assert view[1, 0].tolist() == palette[2].tolist()  # voxel (1, 1)
    assert view[0, 1].tolist() == list(FREE_COLOUR)  # voxel (2, 0): empty column

    shaded = bev_view(semantics, free, names, pixels_per_voxel=2, height_shading=0.3)
    assert shaded.shape == (6, 4, 3)
    # top at z = 2 of 4: 1 - 0.3 * (3 - 2) / 3 = 0.9 of the class colour
    assert shaded[5, 3].tolist() == np.round(palette[0] * 0.9).astype(int).tolist()
    masked = bev_view(
        semantics, free, names, mask=semantics != 0, pixels_per_voxel=1, height_shading=0.0
    )
    assert masked[2, 1].tolist() == palette[2].tolist()  # the car masked out: road shows


def test_bev_view_marks_the_ego_origin():
    grid = VoxelGrid(point_cloud_range=(-1.2, -2.0, 0.0, 2.8, 2.0, 1.6), voxel_size=(0.4,) * 3)
    semantics = np.full(grid.shape, FREE, dtype=np.uint8)
    view = bev_view(semantics, FREE, NAMES, grid=grid, pixels_per_voxel=10)
    assert view.shape == (100, 100, 3)
    # ego x = 0 is voxel x 3 of 10 -> picture row (10 - 3) * 10; y = 0 -> column 50
    assert view[70, 50].tolist() == list(EGO_MARKER_FILL)
    assert view[30, 50].tolist() == list(FREE_COLOUR)
    with pytest.raises(ValueError, match="grid shape"):
        bev_view(semantics[:5], FREE, NAMES, grid=grid)


@pytest.mark.parametrize("scale", [1, 2])
def test_cube_sprite_faces_have_the_projected_areas(scale):
    offsets, face = cube_sprite(oblique_axes(scale))
    # Each visible face is a parallelogram of area |det| = 4 scale^2 pixels.
    assert np.bincount(face, minlength=3).tolist() == [4 * scale * scale] * 3
    assert len(np.unique(offsets, axis=0)) == len(offsets)


def test_perspective_view_single_voxel_and_stacked_voxels():
    names = ["car", "pedestrian"]
    semantics = np.full((3, 3, 2), 2, dtype=np.uint8)
    assert np.all(perspective_view(semantics, 2, names, scale=1) == 255)

    semantics[1, 1, 0] = 0
    view = perspective_view(semantics, 2, names, scale=1)
    assert view.shape == (1 * (3 + 3 + 4), 2 * (3 + 3), 3)
    car = np.asarray(OCC3D_CLASS_COLOURS["car"], dtype=np.float64)
    for shade in FACE_SHADES:
        assert np.all(view == np.round(car * shade).astype(np.uint8), axis=-1).sum() == 4

    semantics[1, 1, 1] = 1  # a pedestrian on the car hides the car's top face
    view = perspective_view(semantics, 2, names, scale=1)
    assert not has_colour(view, car.astype(np.uint8))
    assert has_colour(view, np.round(car * FACE_SHADES[1]).astype(np.uint8))
    assert has_colour(view, OCC3D_CLASS_COLOURS["pedestrian"])


def painter_view(semantics: np.ndarray, free: int, names: list[str], scale: int) -> np.ndarray:
    """Every occupied voxel drawn one by one, farthest first (depth x + y - z)."""
    axes = oblique_axes(scale)
    num_x, num_y, num_z = semantics.shape
    height, width = scale * (num_x + num_y + 2 * num_z), 2 * scale * (num_x + num_y)
    picture = np.full((height, width, 3), 255, dtype=np.uint8)
    offsets, face = cube_sprite(axes)
    palette = label_palette(names)
    voxels = [tuple(v) for v in np.argwhere(semantics != free)]
    for voxel in sorted(voxels, key=lambda v: -(v[0] + v[1] - v[2])):
        row, col = axes @ np.array(voxel) + np.array([height, 2 * scale * num_y])
        for (dr, dc), f in zip(offsets, face):
            colour = palette[semantics[voxel]] * FACE_SHADES[f]
            picture[row + dr, col + dc] = np.round(colour).astype(np.uint8)
    return picture


def test_perspective_view_matches_a_painters_algorithm():
    rng = np.random.default_rng(5)
    names = NAMES[:5]
    semantics = rng.integers(0, 5, (6, 5, 4)).astype(np.uint8)
    semantics[rng.random(semantics.shape) < 0.5] = 5  # half of the voxels free
    view = perspective_view(semantics, 5, names, scale=2)
    np.testing.assert_array_equal(view, painter_view(semantics, 5, names, scale=2))
    np.testing.assert_array_equal(view, perspective_view(semantics, 5, names, scale=2))


# ----------------------------------------------------------------------------------- save


def test_save_png_is_atomic_and_readable(tmp_path):
    picture = np.random.default_rng(1).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = tmp_path / "out" / "panel.png"
    save_png(path, picture)
    assert os.listdir(path.parent) == ["panel.png"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), picture)
    with pytest.raises(ValueError, match="panel.png: save_png needs uint8"):
        save_png(path, picture.astype(np.float32))
    assert os.listdir(path.parent) == ["panel.png"]
