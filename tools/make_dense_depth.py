"""Build dense multi-frame LiDAR depth for every keyframe camera image of an info file.

Writes <out>/<CAM>/<image stem>.npz (depth float16, confidence uint8: 255 measured, less
filled, 0 none) and <out>/manifest.json. Rerunning resumes (finished files are skipped);
--shard i/n builds every n-th keyframe starting at i (0-based), so n machines can share the
work. See docs/dense_depth.md.

With --transfer-labels the unlabelled sweeps take classes from the labelled keyframe sweeps
(KNN after motion compensation) and every file also holds 'semantics' (uint8, Occ3D class
of each measured pixel, 255 = none).

Examples:
    python tools/make_dense_depth.py --infos data/infos/renderlss_infos_train.pkl \\
        --out data/dense_depth --complete --transfer-labels
    python tools/make_dense_depth.py --infos data/synthetic_infos/renderlss_infos_val.pkl \\
        --evaluate-oracle --max-keyframes 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.configuration import ConfigError  # noqa: E402
from renderlss.data.classes import learning_map_table, load_classes  # noqa: E402
from renderlss.io import atomic_save_json, remove_stale_temp_files  # noqa: E402
from renderlss.labels.artifacts import parse_shard  # noqa: E402
from renderlss.labels.dense_depth import (  # noqa: E402
    COMPLETION_KERNELS_AT_REFERENCE,
    REFERENCE_WIDTH,
    VISIBILITY_RADIUS_AT_REFERENCE,
    DenseDepthConfig,
    build_dense_depth,
    dense_depth_config,
)
from renderlss.labels.depth_quality import (  # noqa: E402
    evaluate_against_oracle,
    format_quality_table,
)
from renderlss.labels.label_transfer import (  # noqa: E402
    PointClasses,
    add_transfer_arguments,
    transfer_config_from_args,
)
from renderlss.labels.visibility import LidarVisibilityConfig  # noqa: E402
from renderlss.records.infos import load_infos  # noqa: E402
from renderlss.synthetic.lidar_range_image import dataroot_range_image_config  # noqa: E402

DEFAULTS = DenseDepthConfig()
CLASSES_FILE = Path(__file__).resolve().parents[1] / "configs/_base_/occ3d_nuscenes.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--infos", required=True, type=Path, help="info pickle of one split")
    parser.add_argument(
        "--out", type=Path, help="output folder (not needed with --evaluate-oracle)"
    )
    parser.add_argument(
        "--dataroot", help="dataroot for relative paths (default: the one in the info file)"
    )
    parser.add_argument(
        "--window-sweeps",
        type=int,
        default=DEFAULTS.window_sweeps,
        help="LiDAR sweeps before and after the keyframe sweep, each way (default %(default)s)",
    )
    parser.add_argument(
        "--no-dynamic", action="store_true", help="treat all points as static (no box motion)"
    )
    parser.add_argument(
        "--no-visibility", action="store_true", help="keep points hidden behind nearer ones"
    )
    parser.add_argument(
        "--visibility-radius",
        type=int,
        default=DEFAULTS.visibility_radius,
        help="half window (output pixels) of the hidden-point test (default: "
        f"{VISIBILITY_RADIUS_AT_REFERENCE} px at {REFERENCE_WIDTH} px output width, scaled "
        "with each image's output width and rounded: 12 at 800 px, 24 at 1600 px)",
    )
    parser.add_argument(
        "--lidar-visibility",
        action="store_true",
        help="also drop points of other sweeps that the keyframe sweep's range image sees "
        "behind a nearer return (LiDAR-side test; sensor geometry from the dataroot's "
        "synthetic_meta, else the nuScenes HDL-32E)",
    )
    parser.add_argument("--complete", action="store_true", help="fill small holes (confidence < 1)")
    parser.add_argument(
        "--completion-kernels",
        type=int,
        nargs="+",
        default=DEFAULTS.completion_kernels,
        help="odd kernel diameters (output pixels) of the hole filling, applied in turn "
        f"(default: {COMPLETION_KERNELS_AT_REFERENCE[0]} px at {REFERENCE_WIDTH} px output "
        "width, its half size scaled with the output width: 9 at 800 px, 17 at 1600 px)",
    )
    parser.add_argument(
        "--downscale",
        type=int,
        default=DEFAULTS.downscale,
        help="store at image size / this integer (default %(default)s)",
    )
    parser.add_argument(
        "--transfer-labels",
        action="store_true",
        help="also write per-pixel classes ('semantics'): lidarseg of the keyframe sweeps, "
        "KNN-transferred to the sweeps between them (needs lidarseg)",
    )
    add_transfer_arguments(parser)
    parser.add_argument(
        "--classes",
        type=Path,
        default=CLASSES_FILE,
        help="config file with the data.classes section (default: Occ3D-nuScenes)",
    )
    parser.add_argument("--shard", default="0/1", help="i/n: this machine's share (default 0/1)")
    parser.add_argument(
        "--evaluate-oracle",
        action="store_true",
        help="instead of writing files, compare the ablations (single sweep ... + completion) "
        "with the synthetic oracle (or --ground-truth-dir) and print a table",
    )
    parser.add_argument(
        "--ground-truth-dir",
        default="",
        help="with --evaluate-oracle: your own per-image maps instead of the oracle, "
        "<dir>/<CAM>/<image stem>.npz with 'depth' (float, camera z in metres, 0 = unknown) "
        "and optional 'semantics' (uint8 Occ3D classes) for the dynamic columns "
        "(docs/formats.md)",
    )
    parser.add_argument(
        "--max-keyframes", type=int, help="with --evaluate-oracle: use the first N keyframes"
    )
    parser.add_argument("--json", type=Path, help="with --evaluate-oracle: also write the numbers")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def lidar_visibility_from_args(args: argparse.Namespace, dataroot: str) -> LidarVisibilityConfig:
    """The LiDAR-side test's settings: on with --lidar-visibility, for the dataroot's LiDAR."""
    if not args.lidar_visibility:
        return LidarVisibilityConfig()
    return LidarVisibilityConfig(enabled=True, sensor=dataroot_range_image_config(dataroot))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        shard = parse_shard(args.shard)
        metadata, infos = load_infos(args.infos)
        dataroot = args.dataroot or metadata.get("dataroot")
        if not dataroot:
            raise ValueError(f"{args.infos} records no dataroot; pass --dataroot")
        config = dense_depth_config(
            window_sweeps=args.window_sweeps,
            dynamic=not args.no_dynamic,
            visibility=not args.no_visibility,
            visibility_radius=args.visibility_radius,
            lidar_visibility=lidar_visibility_from_args(args, dataroot),
            complete=args.complete,
            completion_kernels=args.completion_kernels,
            downscale=args.downscale,
            transfer_labels=args.transfer_labels,
            label_transfer=transfer_config_from_args(args),
        )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cameras = list(metadata.get("cameras") or (infos[0]["cams"] if infos else []))
    if args.evaluate_oracle:
        classes = load_classes(args.classes)
        dynamic = [classes.occ_class_names.index(c) for c in classes.dynamic_class_names]
        chosen = infos[: args.max_keyframes] if args.max_keyframes else infos
        try:
            results = evaluate_against_oracle(
                chosen,
                dataroot,
                config,
                cameras,
                dynamic,
                show_progress=not args.quiet,
                ground_truth_dir=args.ground_truth_dir,
            )
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{len(chosen)} keyframes x {len(cameras)} cameras of {args.infos}")
        print(format_quality_table(results))
        if args.json:
            atomic_save_json(args.json, results)
        return 0
    if args.out is None:
        print("error: --out is required unless --evaluate-oracle", file=sys.stderr)
        return 2
    remove_stale_temp_files(args.out)
    try:
        classes = load_classes(args.classes)
        point_classes = PointClasses(
            learning_map_table(classes), len(classes.occ_class_names), classes.ignore_index
        )
        summary = build_dense_depth(
            infos,
            dataroot,
            args.out,
            config,
            cameras,
            shard,
            show_progress=not args.quiet,
            point_classes=point_classes,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.format())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
