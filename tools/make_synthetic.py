"""Generate the synthetic driving world as a nuScenes-format dataroot.

Writes ``<out>/<version>/*.json`` (13 nuScenes tables + lidarseg), ``samples/``, ``sweeps/``,
``lidarseg/``, ``maps/``, Occ3D labels under ``gts/`` and the depth/semantics oracle under
``oracle/``. Rerunning with the same arguments resumes an interrupted run (finished
keyframes are skipped) and gives identical files. See docs/synthetic.md.

Example:
    python tools/make_synthetic.py --out data/synthetic --scenes 4 --keyframes 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.configuration import ConfigError  # noqa: E402
from renderlss.synthetic import generate_dataset, synthetic_config  # noqa: E402
from renderlss.synthetic.config import SyntheticConfig  # noqa: E402

DEFAULTS = SyntheticConfig.__dataclass_fields__


def _default(name: str):
    return DEFAULTS[name].default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="output dataroot folder")
    parser.add_argument(
        "--version", default=_default("version"), help="table folder name (default %(default)s)"
    )
    parser.add_argument(
        "--scenes",
        type=int,
        default=_default("num_scenes"),
        help="number of scenes, each a different street layout (default %(default)s)",
    )
    parser.add_argument(
        "--keyframes",
        type=int,
        default=_default("keyframes_per_scene"),
        help="keyframes (2 Hz samples) per scene (default %(default)s)",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=_default("width"),
        help="image width; the 1600x900 rig intrinsics are scaled to it (default %(default)s)",
    )
    parser.add_argument(
        "--height", type=int, default=_default("height"), help="image height (default %(default)s)"
    )
    parser.add_argument(
        "--lidar-rate",
        type=float,
        default=_default("lidar_rate_hz"),
        help="LiDAR sweep rate in Hz, a multiple of 2 (default %(default)s)",
    )
    parser.add_argument(
        "--camera-rate",
        type=float,
        default=_default("camera_rate_hz"),
        help="camera frame rate in Hz, a multiple of 2 (default %(default)s)",
    )
    parser.add_argument(
        "--camera-sweeps",
        action="store_true",
        help="also write the non-keyframe camera images (all frames at the camera rate); "
        "by default only keyframe images are written and listed in the tables",
    )
    parser.add_argument(
        "--azimuth-steps",
        type=int,
        default=_default("azimuth_steps"),
        help="LiDAR rays per beam and revolution, 32 beams (default %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_default("seed"),
        help="dataset seed: same seed and options give identical files (default %(default)s)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=_default("jpeg_quality"),
        help="JPEG quality 1..100 (default %(default)s)",
    )
    parser.add_argument(
        "--camera-mask-stride",
        type=int,
        default=_default("camera_mask_stride"),
        help="cast the Occ3D camera-mask rays through every n-th pixel (default %(default)s)",
    )
    parser.add_argument(
        "--occ-subsamples",
        type=int,
        default=_default("occ_subsamples"),
        help="sub-samples per voxel axis for the voxel class vote (default %(default)s)",
    )
    parser.add_argument(
        "--grid",
        type=float,
        nargs=7,
        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1", "VOXEL"),
        help="extent (metres, keyframe ego frame) and voxel size of the Occ3D labels; "
        "default the Occ3D-nuScenes grid -40 -40 -1 40 40 5.4 0.4 (200x200x16)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    grid = {}
    if args.grid:
        grid = dict(grid=dict(point_cloud_range=args.grid[:6], voxel_size=[args.grid[6]] * 3))
    try:
        config = synthetic_config(
            **grid,
            version=args.version,
            num_scenes=args.scenes,
            keyframes_per_scene=args.keyframes,
            width=args.width,
            height=args.height,
            lidar_rate_hz=args.lidar_rate,
            camera_rate_hz=args.camera_rate,
            camera_sweeps=args.camera_sweeps,
            azimuth_steps=args.azimuth_steps,
            seed=args.seed,
            jpeg_quality=args.jpeg_quality,
            camera_mask_stride=args.camera_mask_stride,
            occ_subsamples=args.occ_subsamples,
        )
        summary = generate_dataset(args.out, config, progress=not args.quiet)
    except (ConfigError, ValueError) as err:
        print(f"make_synthetic: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
