"""Write renderlss info files from a nuScenes-format dataroot.

Example:
    python tools/create_data.py --dataroot data/nuscenes --version v1.0-mini --out-dir data/infos

One pickle per split (<out-dir>/<prefix>_infos_<split>.pkl, format in docs/formats.md):
train/val for v1.0-trainval, mini_train/mini_val for v1.0-mini, test for v1.0-test (the
official nuScenes scene lists), and a deterministic by-scene train/val split for any other
version (e.g. a synthetic dataroot).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.data.file_check import check_info_files  # noqa: E402
from renderlss.data.info_builder import CreateReport, MissingFileError, create_infos  # noqa: E402
from renderlss.data.unlabeled_infos import (  # noqa: E402
    create_unlabeled_infos,
    format_unlabeled_report,
)
from renderlss.io import remove_stale_temp_files  # noqa: E402
from renderlss.records.infos import load_infos  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataroot", required=True, help="folder holding <version>/*.json")
    parser.add_argument("--version", required=True, help="e.g. v1.0-mini, v1.0-trainval")
    parser.add_argument("--out-dir", required=True, help="where the info pickles are written")
    parser.add_argument(
        "--prefix", default="renderlss", help="file name prefix (default: %(default)s)"
    )
    parser.add_argument(
        "--max-sweeps",
        type=int,
        default=10,
        help="previous LiDAR sweeps kept per keyframe (default: %(default)s)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.25,
        help="share of validation scenes for versions without an official split "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="skip (and count) samples whose image/LiDAR/sweep/lidarseg files are missing "
        "instead of stopping at the first",
    )
    parser.add_argument(
        "--check-files",
        action="store_true",
        help="after writing the infos, open every image, LiDAR, lidarseg and sweep file they "
        "reference and list every unreadable, truncated or mismatched one (exit code 1 if any)",
    )
    parser.add_argument(
        "--unlabeled",
        action="store_true",
        help="also write <out-dir>/<prefix>_infos_<split>_unlabeled.pkl: the camera frames "
        "between keyframes (sweeps/CAM_*) grouped per time with their nearest LiDAR sweep, "
        "without labels (docs/data.md, 'Unlabeled frames')",
    )
    return parser.parse_args(argv)


def check_files(report: CreateReport) -> int:
    """The ``--check-files`` pass over the info files just written: 0 when every referenced
    file is usable, else 1 after listing all problems."""
    checked, problems = 0, []
    for split in report.splits.values():
        _, infos = load_infos(split.path)
        count, found = check_info_files(infos, report.dataroot)
        checked += count
        problems += found
    print(f"checked {checked} files: {len(problems)} with problems")
    for problem in problems:
        print(f"error: {problem.format()}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    remove_stale_temp_files(args.out_dir, recursive=False)
    try:
        report = create_infos(
            dataroot=args.dataroot,
            version=args.version,
            out_dir=args.out_dir,
            prefix=args.prefix,
            max_sweeps=args.max_sweeps,
            val_fraction=args.val_fraction,
            skip_missing=args.skip_missing,
        )
        unlabeled = (
            create_unlabeled_infos(
                args.dataroot,
                args.version,
                args.out_dir,
                args.prefix,
                args.max_sweeps,
                args.val_fraction,
            )
            if args.unlabeled
            else None
        )
    except MissingFileError as err:
        print(f"error: {err}\n(use --skip-missing to skip such samples)", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.format())
    if unlabeled is not None:
        print(format_unlabeled_report(unlabeled))
    return check_files(report) if args.check_files else 0


if __name__ == "__main__":
    sys.exit(main())
