"""Panels that put renderings next to their targets: one camera per panel, a row of titled
tiles (image | target | rendered | error) over a footer with colour bars or a class legend.

Every function is pure and returns a uint8 RGB array [H, W, 3]; writing it is ``save_png``'s
job. Text uses Pillow's built-in default font, so no font file or GUI backend is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from renderlss.vis.colormaps import (
    FREE_COLOUR,
    depth_to_rgb,
    error_to_rgb,
    label_palette,
    labels_to_rgb,
    signed_relative_error,
    valid_depth,
)

BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
OUTLINE_COLOUR = (128, 128, 128)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def default_font_size(image_height: int) -> int:
    """Font size that stays legible for tiles from a few hundred to ~1000 pixels high."""
    return max(10, round(image_height / 40))


def load_font(size: int) -> Font:
    """Pillow's default font at ``size``; its fixed-size bitmap font where Pillow was built
    without FreeType (then ``size`` cannot be honoured)."""
    try:
        return ImageFont.load_default(size=size)
    except ImportError:
        return ImageFont.load_default()


def line_height(font: Font) -> int:
    """Pixel height of one line of text, ascenders to descenders."""
    return int(font.getbbox("Ag|")[3]) + 1


def _text_width(font: Font, text: str) -> int:
    return int(np.ceil(font.getlength(text)))


def _padding(font: Font) -> int:
    return max(2, line_height(font) // 3)


def _blank(height: int, width: int) -> np.ndarray:
    """[height, width, 3] background."""
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)


def stack_horizontal(images: Sequence[np.ndarray], gap: int) -> np.ndarray:
    """Images side by side, top-aligned, ``gap`` background pixels apart.

    Args:
        images: each [H_i, W_i, 3] uint8.
    Returns:
        [max H_i, sum W_i + gaps, 3] uint8.
    """
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
    canvas = _blank(height, width)
    x = 0
    for image in images:
        canvas[: image.shape[0], x : x + image.shape[1]] = image
        x += image.shape[1] + gap
    return canvas


def stack_vertical(images: Sequence[np.ndarray], gap: int) -> np.ndarray:
    """Images one above the other, left-aligned, ``gap`` background pixels apart."""
    transposed = [np.ascontiguousarray(image.transpose(1, 0, 2)) for image in images]
    return np.ascontiguousarray(stack_horizontal(transposed, gap).transpose(1, 0, 2))


def tile_panels(panels: Sequence[np.ndarray], columns: int, gap: int = 8) -> np.ndarray:
    """Panels (e.g. one per camera) in a grid, row by row, ``columns`` per row.

    Args:
        panels: each [H_i, W_i, 3] uint8; smaller ones are padded with background.
    Returns:
        [rows * max H + gaps, min(columns, len(panels)) * max W + gaps, 3] uint8.
    """
    if not panels or columns < 1:
        raise ValueError(f"tile_panels: need panels and columns >= 1, got {len(panels)}, {columns}")
    height = max(panel.shape[0] for panel in panels)
    width = max(panel.shape[1] for panel in panels)
    cells = [pad_to(panel, height, width) for panel in panels]
    rows = [stack_horizontal(cells[i : i + columns], gap) for i in range(0, len(cells), columns)]
    return stack_vertical(rows, gap)


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w, 3] placed top-left on a [height, width, 3] background (h <= height, w <= width)."""
    canvas = _blank(height, width)
    canvas[: image.shape[0], : image.shape[1]] = image
    return canvas


def _as_rgb_image(image: np.ndarray, field: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{field}: expected uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    return image


def _as_map(values: np.ndarray, field: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{field}: expected a [H, W] map, got shape {values.shape}")
    return values


def resize_nearest(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w, 3] uint8 -> [height, width, 3] by nearest neighbour (no blended colours)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST))


def display_radius(valid: np.ndarray, radius: int | None) -> int:
    """Radius in pixels by which valid points of a map are spread for display: ``radius`` when
    given, otherwise 0 for a dense map and ~0.4% of the image size for a sparse one (fewer than
    half of the pixels valid), so that LiDAR-like targets stay visible."""
    if radius is not None:
        return radius
    if valid.size == 0 or valid.mean() >= 0.5:
        return 0
    return max(1, round(min(valid.shape) / 250))


def spread_sparse_points(depth: np.ndarray, valid: np.ndarray, radius: int) -> np.ndarray:
    """Which valid pixel each pixel displays when valid points are drawn as discs.

    Valid pixels show themselves; an invalid pixel shows the nearest-in-depth valid pixel
    within ``radius`` (Euclidean, in pixels), so near points cover far ones as in a z-buffer.

    Args:
        depth: [H, W] priority (smaller wins); valid: [H, W] bool.
    Returns:
        [H, W] int64 flat index into the map of the displayed pixel, -1 where none.
    """
    height, width = valid.shape
    source = np.where(valid, np.arange(height * width).reshape(height, width), -1)
    nearest = np.where(valid, depth, np.inf)
    if radius <= 0:
        return source
    padded_depth = np.pad(nearest, radius, constant_values=np.inf)
    padded_source = np.pad(source, radius, constant_values=-1)
    spread_depth, spread_source = nearest.copy(), source.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius:
                continue
            window = (
                slice(radius + dy, radius + dy + height),
                slice(radius + dx, radius + dx + width),
            )
            take = ~valid & (padded_depth[window] < spread_depth)
            spread_depth = np.where(take, padded_depth[window], spread_depth)
            spread_source = np.where(take, padded_source[window], spread_source)
    return spread_source


def gather(values: np.ndarray, source: np.ndarray, fill: float) -> np.ndarray:
    """[H, W] values at the flat indices ``source`` ([H, W] int64), ``fill`` where it is -1."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return np.where(source >= 0, flat[np.maximum(source, 0)], fill)


def nice_ticks(lo: float, hi: float, max_count: int) -> np.ndarray:
    """Round tick values (multiples of 1, 2 or 5 x 10^k) inside [lo, hi], at most
    ``max_count`` of them and as many as that allows.

    Returns:
        [T] float64, increasing.
    """
    span = hi - lo
    if not span > 0 or max_count < 1:
        raise ValueError(
            f"nice_ticks: need lo < hi and max_count >= 1, got {lo}, {hi}, {max_count}"
        )
    magnitude = 10.0 ** np.floor(np.log10(span / max_count))
    for multiple in (1.0, 2.0, 5.0, 10.0, 20.0):
        step = multiple * magnitude
        first, last = np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9)
        if last - first + 1 <= max_count:
            return np.arange(first, last + 1) * step
    raise AssertionError("unreachable: a step of 20x the magnitude fits max_count ticks")


def format_tick(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick ``step`` needs (ASCII only)."""
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def colour_bar(
    colour_of: Callable[[np.ndarray], np.ndarray],
    lo: float,
    hi: float,
    width: int,
    caption: str,
    font: Font,
    unit_suffix: str = "",
) -> np.ndarray:
    """A horizontal colour bar from ``lo`` (left) to ``hi`` (right) with labelled round ticks.

    Args:
        colour_of: values [L] -> [L, 3] uint8 colours (the map the bar explains).
        width: total width in pixels; the bar is inset so that its end labels fit.
        unit_suffix: appended to every tick label (e.g. "%").
    Returns:
        [h, width, 3] uint8: caption, bar, tick marks and tick labels.
    """
    pad, text_h = _padding(font), line_height(font)
    widest = max(_text_width(font, f"-{v:.1f}{unit_suffix}") for v in (lo, hi))
    margin = widest // 2 + pad
    length = max(2, width - 2 * margin)
    ticks = nice_ticks(lo, hi, max(2, min(8, length // (2 * widest + 1))))
    step = ticks[1] - ticks[0] if len(ticks) > 1 else hi - lo

    # Each bar column shows the value at its centre, as a pixel of an image would.
    values = lo + (np.arange(length) + 0.5) / length * (hi - lo)
    bar_top, bar_h = text_h + pad, text_h
    canvas = _blank(bar_top + bar_h + pad + text_h + pad, width)
    canvas[bar_top : bar_top + bar_h, margin : margin + length] = colour_of(values)[None]
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    draw.text((margin, 0), caption, fill=TEXT_COLOUR, font=font)
    draw.rectangle(
        (margin - 1, bar_top - 1, margin + length, bar_top + bar_h), outline=OUTLINE_COLOUR
    )
    for tick in ticks:
        x = margin + round((tick - lo) / (hi - lo) * length)
        draw.line((x, bar_top + bar_h, x, bar_top + bar_h + pad - 1), fill=TEXT_COLOUR)
        label = format_tick(tick, step) + unit_suffix
        draw.text(
            (x - _text_width(font, label) // 2, bar_top + bar_h + pad),
            label,
            fill=TEXT_COLOUR,
            font=font,
        )
    return np.asarray(picture)


def legend_entries(
    indices: Sequence[int], class_names: Sequence[str], ignore_index: int
) -> list[tuple[str, int]]:
    """(name, index) for class indices, naming free (C) and ignore too."""
    names = {**dict(enumerate(class_names)), len(class_names): "free", ignore_index: "ignore"}
    return [(names[int(i)], int(i)) for i in indices if int(i) in names]


def class_legend(
    indices: Sequence[int],
    class_names: Sequence[str],
    width: int,
    font: Font,
    ignore_index: int = 255,
) -> np.ndarray:
    """Colour swatches with class names, flowing left to right and wrapping at ``width``.

    Args:
        indices: class indices to list, in this order (C is free, ``ignore_index`` ignore).
    Returns:
        [h, width, 3] uint8.
    """
    palette = label_palette(class_names, ignore_index)
    pad, text_h = _padding(font), line_height(font)
    placed, x, y = [], pad, pad
    for name, index in legend_entries(indices, class_names, ignore_index):
        entry_w = text_h + pad + _text_width(font, name)
        if x > pad and x + entry_w > width - pad:
            x, y = pad, y + text_h + pad
        placed.append((x, y, name, index))
        x += entry_w + 3 * pad
    canvas = _blank(y + text_h + pad, width)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for x, y, name, index in placed:
        colour = tuple(int(c) for c in palette[index])
        # Only white (free) needs an outline to be seen; others keep their pure colour.
        outline = OUTLINE_COLOUR if colour == FREE_COLOUR else None
        draw.rectangle((x, y, x + text_h - 1, y + text_h - 1), fill=colour, outline=outline)
        draw.text((x + text_h + pad, y), name, fill=TEXT_COLOUR, font=font)
    return np.asarray(picture)


def titled_row(tiles: Sequence[np.ndarray], titles: Sequence[str], font: Font) -> np.ndarray:
    """Equal-height tiles side by side, each with its title above it."""
    pad, text_h = _padding(font), line_height(font)
    row = stack_horizontal(tiles, pad)
    canvas = stack_vertical([_blank(text_h + pad, row.shape[1]), row], 0)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    x = 0
    for tile, title in zip(tiles, titles, strict=True):
        draw.text((x, 0), title, fill=TEXT_COLOUR, font=font)
        x += tile.shape[1] + pad
    return np.asarray(picture)


def depth_map_display(depth: np.ndarray, radius: int | None) -> np.ndarray:
    """[H, W] int64 displayed-pixel index of a depth map (see ``spread_sparse_points``)."""
    valid = valid_depth(depth)
    return spread_sparse_points(depth, valid, display_radius(valid, radius))


def depth_panel(
    image: np.ndarray,
    target_depth: np.ndarray,
    rendered_depth: np.ndarray,
    d_min: float,
    d_max: float,
    *,
    max_relative_error: float = 0.5,
    point_radius: int | None = None,
    caption: str = "image",
    font_size: int | None = None,
) -> np.ndarray:
    """image | target depth | rendered depth | relative error, with colour bars in metres and %.

    Depth is camera z in metres, 0 or NaN where unknown (drawn black); near is bright. The
    error is (rendered - target) / target where both are known, blue = too near, red = too
    far, saturated at ``max_relative_error``. Sparse maps (fewer than half of the pixels
    known, e.g. projected LiDAR) are drawn as discs of ``point_radius`` pixels (automatic when
    None), nearer points on top. Depth maps may have another resolution than the image; they
    are scaled to it by nearest neighbour.

    Args:
        image: [H, W, 3] uint8 RGB camera image.
        target_depth, rendered_depth: [h, w] metres, same shape.
        caption: title of the image tile (e.g. the camera name).
    Returns:
        [H', W', 3] uint8 RGB panel.
    """
    image = _as_rgb_image(image, "depth_panel: image")
    target = _as_map(target_depth, "depth_panel: target_depth").astype(np.float64)
    rendered = _as_map(rendered_depth, "depth_panel: rendered_depth").astype(np.float64)
    if target.shape != rendered.shape:
        raise ValueError(
            f"depth_panel: rendered_depth shape {rendered.shape} != target_depth {target.shape}"
        )
    height, width = image.shape[:2]
    font = load_font(font_size or default_font_size(height))

    error = signed_relative_error(target, rendered)
    error_known = ~np.isnan(error)
    # Error pixels are spread like the target points they belong to.
    error_source = spread_sparse_points(
        target, error_known, display_radius(error_known, point_radius)
    )
    maps = [
        depth_to_rgb(gather(target, depth_map_display(target, point_radius), 0.0), d_min, d_max),
        depth_to_rgb(
            gather(rendered, depth_map_display(rendered, point_radius), 0.0), d_min, d_max
        ),
        error_to_rgb(gather(error, error_source, np.nan), max_relative_error),
    ]
    tiles = [image] + [resize_nearest(tile, height, width) for tile in maps]
    row = titled_row(tiles, [caption, "target depth", "rendered depth", "relative error"], font)

    pad = _padding(font)
    depth_bar = colour_bar(
        lambda v: depth_to_rgb(v, d_min, d_max), d_min, d_max, 2 * width + pad, "depth [m]", font
    )
    limit = 100.0 * max_relative_error
    error_bar = colour_bar(
        lambda p: error_to_rgb(p / 100.0, max_relative_error),
        -limit,
        limit,
        width,
        "(rendered - target) / target",
        font,
        unit_suffix="%",
    )
    footer = stack_horizontal([_blank(1, width), depth_bar, error_bar], pad)
    return stack_vertical([row, footer], pad)


def semantic_panel(
    image: np.ndarray,
    target_sem: np.ndarray,
    rendered_sem: np.ndarray,
    class_names: Sequence[str],
    *,
    legend: str = "present",
    ignore_index: int = 255,
    caption: str = "image",
    font_size: int | None = None,
) -> np.ndarray:
    """image | target semantics | rendered semantics, with a class legend below.

    Semantic maps hold class indices (0..C-1, C = free drawn white, ``ignore_index`` black);
    pass the argmax of rendered logits. They are scaled to the image by nearest neighbour.

    Args:
        image: [H, W, 3] uint8 RGB camera image.
        target_sem, rendered_sem: [h, w] integer class indices (shapes may differ).
        class_names: C names; colours from ``renderlss.vis.colormaps.class_colour``.
        legend: "present" lists the indices found in either map, "all" lists every class.
    Returns:
        [H', W', 3] uint8 RGB panel.
    """
    image = _as_rgb_image(image, "semantic_panel: image")
    target = _as_map(target_sem, "semantic_panel: target_sem")
    rendered = _as_map(rendered_sem, "semantic_panel: rendered_sem")
    if legend not in ("present", "all"):
        raise ValueError(f"semantic_panel: legend must be 'present' or 'all', got {legend!r}")
    height, width = image.shape[:2]
    font = load_font(font_size or default_font_size(height))

    tiles = [
        image,
        resize_nearest(
            labels_to_rgb(target, class_names, ignore_index, "semantic_panel: target_sem"),
            height,
            width,
        ),
        resize_nearest(
            labels_to_rgb(rendered, class_names, ignore_index, "semantic_panel: rendered_sem"),
            height,
            width,
        ),
    ]
    row = titled_row(tiles, [caption, "target semantics", "rendered semantics"], font)
    if legend == "all":
        indices = list(range(len(class_names)))
    else:
        indices = np.union1d(np.unique(target), np.unique(rendered)).tolist()
    return stack_vertical(
        [row, class_legend(indices, class_names, row.shape[1], font, ignore_index)], 0
    )
