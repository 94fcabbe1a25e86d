#!/usr/bin/env python
"""Choose the density threshold of occupancy prediction on a training-side split.

Evaluates the Occ3D mIoU of a checkpoint for a range of thresholds (one pass of the network,
every threshold scored from the same volumes), prints the table and the best value, which
goes into the config as ``eval.occupancy_threshold``. Tuning on the split that is reported
inflates the result, so ``--split val`` is refused unless ``--allow-val`` is given.

Examples:
    python tools/pick_threshold.py configs/synthetic_demo.py work_dirs/demo/step_000600.pth
    python tools/pick_threshold.py CONFIG CKPT --thresholds 0.1 0.5 1 2 4 --out thresholds.json
"""

from __future__ import annotations

import argparse
import math
import sys

from renderlss.engine.cli import (
    STARTUP_ERRORS,
    add_evaluation_arguments,
    setup_from_arguments,
    startup_error,
)
from renderlss.engine.evaluation import sweep_thresholds
from renderlss.eval.metrics import format_rows, json_safe, miou_key
from renderlss.io import atomic_save_json
from renderlss.train.distributed import cleanup, is_main_process

# Densities per metre; geometric spacing because the useful range spans two decades.
DEFAULT_THRESHOLDS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_evaluation_arguments(parser, default_split="train")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=list(DEFAULT_THRESHOLDS),
        help="density thresholds to try (default %(default)s)",
    )
    parser.add_argument(
        "--allow-val", action="store_true", help="allow tuning on the validation split"
    )
    parser.add_argument("--out", help="write the table to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def best_threshold(thresholds: list[float], scores: list[float]) -> tuple[float, float]:
    """The threshold of the highest score (NaN scores never win; ties: the first)."""
    ranked = [(s, -i) for i, s in enumerate(scores) if not math.isnan(s)]
    if not ranked:
        raise ValueError("no threshold has a defined mIoU (no labelled voxel evaluated)")
    score, neg_index = max(ranked)
    return thresholds[-neg_index], score


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.split == "val" and not args.allow_val:
        print(
            "error: refusing to tune the threshold on the validation split, which is the one "
            "reported; use a training split or pass --allow-val",
            file=sys.stderr,
        )
        return 2
    if any(t < 0 for t in args.thresholds):
        print(f"error: thresholds must be >= 0, got {args.thresholds}", file=sys.stderr)
        return 2
    try:
        setup = setup_from_arguments(args)
    except STARTUP_ERRORS as err:
        return startup_error(err)
    results = sweep_thresholds(
        setup.model,
        setup.dataset,
        setup.config,
        setup.eval_config,
        args.thresholds,
        device=setup.dist.device,
        progress=not args.no_progress,
    )
    if is_main_process():
        rows = {f"{t:g}": r.as_dict() for t, r in zip(args.thresholds, results)}
        main_key = miou_key(len(results[0].class_names))
        columns = [main_key, miou_key(results[0].subset_size), "geometry_IoU"]
        print(f"mIoU per density threshold on split {args.split!r} (percent):")
        print(format_rows(rows, columns))
        best, score = best_threshold(args.thresholds, [r.miou for r in results])
        print(f"\nbest: {best:g} ({main_key} {100 * score:.2f})")
        print(f"set it with eval.occupancy_threshold={best:g}")
        if args.out:
            table = [
                {"threshold": t, **json_safe(r.as_dict())} for t, r in zip(args.thresholds, results)
            ]
            record = dict(split=args.split, checkpoint=args.checkpoint, best=best, table=table)
            atomic_save_json(args.out, record)
            print(f"table written to {args.out}")
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
