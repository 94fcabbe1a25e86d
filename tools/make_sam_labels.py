"""Build 2D semantic labels: class-agnostic masks of every keyframe camera image, each labelled
by the vote of the LiDAR points projected into it: the keyframe lidarseg points
(--votes keyframe), or all sweeps of a window around the keyframe with classes transferred
from the labelled keyframe sweeps by KNN after motion compensation (--votes transferred,
about ten times the votes).

Examples:
    # CPU over-segmentation instead of SAM
    python tools/make_sam_labels.py --infos data/infos/renderlss_infos_train.pkl \\
        --out data/sam_labels --masks slic
    # SAM masks computed elsewhere (<DIR>/<CAM>/<image stem>.npz or .json)
    python tools/make_sam_labels.py --infos ... --out ... --masks files:data/sam_masks
    # SAM run here (needs segment_anything, torchvision and the checkpoint)
    python tools/make_sam_labels.py --infos ... --out ... --masks sam:sam_vit_h_4b8939.pth \\
        --device cuda --shard 0/4

Output: <out>/<CAM>/<image stem>.npz (labels uint8 [H, W], confidence float32 [H, W]) and
<out>/manifest.json. Rerunning resumes (finished images are skipped); --shard i/n takes every
n-th keyframe from i. With --oracle (the synthetic world's oracle folder) the labels of this
run's keyframes are compared with the exact per-pixel classes. See docs/sam_labels.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.data.classes import learning_map_table, load_classes  # noqa: E402
from renderlss.eval.label_quality import label_quality, quality_table  # noqa: E402
from renderlss.io import remove_stale_temp_files  # noqa: E402
from renderlss.labels.artifacts import parse_shard, shard_indices  # noqa: E402
from renderlss.labels.dense_depth import DenseDepthConfig, dense_depth_config  # noqa: E402
from renderlss.labels.label_transfer import (  # noqa: E402
    PointClasses,
    add_transfer_arguments,
    transfer_config_from_args,
)
from renderlss.labels.mask_sources import make_mask_source  # noqa: E402
from renderlss.labels.semantic_labels import (  # noqa: E402
    Labeller,
    LabelSettings,
    build_semantic_labels,
)
from renderlss.labels.sweep_voters import TransferredVoterSource  # noqa: E402
from renderlss.records.infos import load_infos  # noqa: E402
from renderlss.targets.lidar import DEFAULT_EGO_BOX, DEFAULT_MIN_DEPTH  # noqa: E402
from renderlss.targets.sources import LidarTargetSource  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLASSES = REPO / "configs" / "_base_" / "occ3d_nuscenes.py"
VOTE_SOURCES = ("keyframe", "transferred")
DEFAULT_VOTES = "keyframe"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = LabelSettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--infos", required=True, type=Path, help="info pickle of one split")
    parser.add_argument("--out", required=True, type=Path, help="output label folder")
    parser.add_argument(
        "--masks", required=True, help="mask source: slic | files:DIR | sam:CHECKPOINT"
    )
    parser.add_argument(
        "--min-votes",
        type=float,
        default=defaults.min_votes,
        help="LiDAR points a mask needs to be labelled (default %(default)s)",
    )
    parser.add_argument(
        "--min-purity",
        type=float,
        default=defaults.min_purity,
        help="share of the votes the winning class needs (default %(default)s)",
    )
    parser.add_argument(
        "--minority-radius",
        type=float,
        default=defaults.minority_radius,
        help="pixels: a cluster of at least --minority-min-votes votes against its mask's "
        "class, linked within this radius, keeps the mask's pixels within it (small objects "
        "inside large masks; 5 suits 400 px wide images, scale it with the width); "
        "0 = off (default %(default)s)",
    )
    parser.add_argument(
        "--minority-min-votes",
        type=float,
        default=defaults.minority_min_votes,
        help="LiDAR points a minority cluster needs (default %(default)s)",
    )
    parser.add_argument(
        "--votes",
        choices=VOTE_SOURCES,
        default=DEFAULT_VOTES,
        help="keyframe: the keyframe's lidarseg points vote; transferred: the points of all "
        "sweeps within --window-sweeps of the keyframe, unlabelled sweeps classed by KNN "
        "from the labelled ones, hidden points removed (default %(default)s; "
        "docs/sam_labels.md compares them)",
    )
    parser.add_argument(
        "--window-sweeps",
        type=int,
        default=DenseDepthConfig().window_sweeps,
        help="with --votes transferred: sweeps before and after the keyframe's, each way "
        "(default %(default)s)",
    )
    add_transfer_arguments(parser)
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th keyframe from i")
    parser.add_argument(
        "--dataroot", default="", help="overrides the dataroot recorded in the info file"
    )
    parser.add_argument(
        "--cameras", nargs="+", default=None, help="cameras (default: all of the info file)"
    )
    parser.add_argument(
        "--classes",
        type=Path,
        default=DEFAULT_CLASSES,
        help="config file with the data.classes section (default: Occ3D-nuScenes)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for sam: (e.g. cuda)")
    parser.add_argument(
        "--oracle", type=Path, default=None, help="oracle folder: print a quality table"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        shard = parse_shard(args.shard)
        metadata, infos = load_infos(args.infos)
        dataroot = args.dataroot or metadata.get("dataroot", "")
        if not dataroot:
            raise ValueError(f"{args.infos}: no dataroot recorded; pass --dataroot")
        cameras = args.cameras or list(metadata.get("cameras", []))
        classes = load_classes(args.classes)
        if args.votes == "transferred":
            point_classes = PointClasses(
                learning_map_table(classes), len(classes.occ_class_names), classes.ignore_index
            )
            config = dense_depth_config(
                window_sweeps=args.window_sweeps, label_transfer=transfer_config_from_args(args)
            )
            voters = TransferredVoterSource(infos, dataroot, point_classes, config)
            votes = voters.manifest()
        else:
            voters = LidarTargetSource(
                dataroot,
                learning_map_table(classes),
                classes.ignore_index,
                DEFAULT_EGO_BOX,
                DEFAULT_MIN_DEPTH,
            )
            votes = dict(
                source="keyframe lidarseg", ego_box=DEFAULT_EGO_BOX, min_depth=DEFAULT_MIN_DEPTH
            )
        labeller = Labeller(
            make_mask_source(args.masks, device=args.device),
            voters,
            dict(votes=votes),
            classes.occ_class_names,
            classes.ignore_index,
            LabelSettings(
                args.min_votes, args.min_purity, args.minority_radius, args.minority_min_votes
            ),
        )
        remove_stale_temp_files(args.out)
        summary = build_semantic_labels(
            infos, dataroot, args.out, cameras, labeller, shard, not args.no_progress
        )
    except (ImportError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary.format())
    if args.oracle is not None:
        shard_infos = [infos[i] for i in shard_indices(len(infos), shard)]
        confusions = label_quality(
            shard_infos,
            args.out,
            args.oracle,
            cameras,
            voters,
            len(classes.occ_class_names),
            classes.ignore_index,
        )
        print(quality_table(confusions, classes.occ_class_names))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
