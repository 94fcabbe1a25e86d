"""Measure the LiDAR-side hidden-point test of accumulated sweeps (docs/dense_depth.md).

--evaluate-oracle: on the keyframes of a synthetic info file, the share of hidden pixels
(more than 10 % behind the oracle's exact depth) that the range-image test, the camera-side
quadrant filter and both remove, the good pixels they lose, and AbsRel; one row per
--margins x --windows variant of the test.

--benchmark: seconds per keyframe of the range-image projection and test on random points
at a given scale (default nuScenes: 34,752 points per sweep, 10 sweeps tested against the
keyframe sweep), next to the camera-side quadrant filter on 6 images of 1600x900.

Examples:
    python tools/lidar_visibility.py --evaluate-oracle \\
        --infos data/synthetic/infos/renderlss_infos_val.pkl
    python tools/lidar_visibility.py --benchmark
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.io import atomic_save_json  # noqa: E402
from renderlss.labels.dense_depth import DenseDepthConfig, pixels_at_width  # noqa: E402
from renderlss.labels.lidar_visibility_quality import (  # noqa: E402
    evaluate_lidar_visibility,
    format_hidden_table,
)
from renderlss.labels.range_image import RangeImageConfig, range_image  # noqa: E402
from renderlss.labels.visibility import (  # noqa: E402
    LidarVisibilityConfig,
    hidden_behind_range_image,
    remove_hidden_points,
)
from renderlss.records.infos import load_infos  # noqa: E402
from renderlss.synthetic.lidar_range_image import dataroot_range_image_config  # noqa: E402

DEFAULTS = LidarVisibilityConfig()


def window(text: str) -> tuple[int, int]:
    """``ROWSxCOLUMNS`` half sizes, e.g. ``0x1``."""
    try:
        rows, columns = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected ROWSxCOLUMNS such as 0x1, got {text!r}"
        ) from err
    return rows, columns


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--evaluate-oracle", action="store_true", help="quality against the oracle")
    mode.add_argument("--benchmark", action="store_true", help="throughput on random points")
    parser.add_argument("--infos", type=Path, help="with --evaluate-oracle: a synthetic info file")
    parser.add_argument("--dataroot", help="default: the one recorded in the info file")
    parser.add_argument("--max-keyframes", type=int, help="only the first N keyframes")
    parser.add_argument(
        "--margins",
        type=float,
        nargs="+",
        default=[DEFAULTS.margin],
        help="relative range gaps of the test (default %(default)s)",
    )
    parser.add_argument(
        "--windows",
        type=window,
        nargs="+",
        default=[(DEFAULTS.window_rows, DEFAULTS.window_columns)],
        help="window half sizes ROWSxCOLUMNS (default 0x1)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers")
    parser.add_argument("--points", type=int, default=34752, help="benchmark: points per sweep")
    parser.add_argument("--sweeps", type=int, default=10, help="benchmark: sweeps tested")
    parser.add_argument("--cameras", type=int, default=6, help="benchmark: camera images")
    parser.add_argument("--width", type=int, default=1600, help="benchmark: image width")
    parser.add_argument("--height", type=int, default=900, help="benchmark: image height")
    parser.add_argument("--repeats", type=int, default=5, help="benchmark: timed repetitions")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def variants(
    sensor: RangeImageConfig, margins: list[float], windows: list[tuple[int, int]]
) -> dict[str, LidarVisibilityConfig | None]:
    """Today's accumulation, then one range-image test per margin and window."""
    chosen: dict[str, LidarVisibilityConfig | None] = {"z-buffer": None}
    for margin in margins:
        for rows, columns in windows:
            chosen[f"range test, margin {margin:g}, window {rows}x{columns}"] = (
                LidarVisibilityConfig(
                    enabled=True,
                    sensor=sensor,
                    margin=margin,
                    window_rows=rows,
                    window_columns=columns,
                )
            )
    return chosen


def random_sweep(rng: np.random.Generator, points: int) -> np.ndarray:
    """[P, 3] points in the HDL-32E's field of view, 2-60 m away."""
    azimuth = rng.uniform(-np.pi, np.pi, points)
    elevation = np.radians(rng.uniform(-30.0, 10.0, points))
    distance = rng.uniform(2.0, 60.0, points)
    return distance[:, None] * np.stack(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
        ],
        axis=1,
    )


def benchmark(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per keyframe: the reference range image plus the test of ``args.sweeps``
    sweeps, and the quadrant filter of ``args.cameras`` images, best of ``args.repeats``."""
    rng = np.random.default_rng(0)
    config = dataclasses.replace(DEFAULTS, enabled=True)
    reference = random_sweep(rng, args.points)
    others = random_sweep(rng, args.points * args.sweeps)
    depth = np.where(
        rng.random((args.height, args.width)) < 0.3,
        rng.uniform(2.0, 60.0, (args.height, args.width)),
        0.0,
    ).astype(np.float32)
    radius = pixels_at_width(6, args.width)
    camera_config = DenseDepthConfig()
    lidar_times, camera_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ranges = range_image(reference, config.sensor).range
        hidden_behind_range_image(others, ranges, config)
        lidar_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(args.cameras):
            remove_hidden_points(
                depth,
                radius,
                camera_config.visibility_margin,
                camera_config.visibility_min_sectors,
            )
        camera_times.append(time.perf_counter() - start)
    return dict(
        range_image_test_s=min(lidar_times), quadrant_filter_s=min(camera_times), radius=radius
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.benchmark:
        result = benchmark(args)
        print(
            f"{args.points} points x {args.sweeps} sweeps tested against one range image: "
            f"{result['range_image_test_s']:.3f} s per keyframe; quadrant filter on "
            f"{args.cameras} images of {args.width}x{args.height} (radius "
            f"{result['radius']}): {result['quadrant_filter_s']:.3f} s per keyframe"
        )
        if args.json:
            atomic_save_json(args.json, result)
        return 0
    if args.infos is None:
        print("error: --evaluate-oracle needs --infos", file=sys.stderr)
        return 2
    try:
        metadata, infos = load_infos(args.infos)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dataroot = args.dataroot or metadata.get("dataroot")
    if not dataroot:
        print(f"error: {args.infos} records no dataroot; pass --dataroot", file=sys.stderr)
        return 2
    cameras = list(metadata.get("cameras") or (infos[0]["cams"] if infos else []))
    chosen = infos[: args.max_keyframes] if args.max_keyframes else infos
    try:
        sensor = dataroot_range_image_config(dataroot)
        results = evaluate_lidar_visibility(
            chosen,
            dataroot,
            DenseDepthConfig(),
            variants(sensor, args.margins, args.windows),
            cameras,
            show_progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(chosen)} keyframes x {len(cameras)} cameras of {args.infos}; sensor {sensor}")
    print(format_hidden_table(results))
    if args.json:
        atomic_save_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
