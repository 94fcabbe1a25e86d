#!/usr/bin/env python
"""Overfit one synthetic keyframe from 2D supervision alone: a check of lifting, density,
sampling and losses.

Trains a fresh network of CONFIG on one training keyframe, with the synthetic oracle's exact
depth and class of its pixels as ray targets (``data.targets.sources=["oracle"]``) and the
config's losses (use a 2D-only config: no Occ3D loss), and scores it every few steps: the
rendered depth of that keyframe's pixels against the truth, and the geometry IoU of its
density on the keyframe's camera-visible voxels (best of --thresholds: this measures what the
network can represent, not a held-out result). Exits 1 when the goals are not reached.
Needs a synthetic dataroot (``make demo`` or tools/make_synthetic.py).

Example:
    python tools/overfit_check.py configs/synthetic_2d.py --steps 300 --out overfit.json
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from renderlss.engine.cli import STARTUP_ERRORS, add_config_arguments, startup_error
from renderlss.engine.experiment import load_experiment
from renderlss.engine.overfit import overfit_keyframe
from renderlss.io import atomic_save_json

# Overrides that make any config an overfit run on oracle targets: every oracle pixel is a
# candidate ray, only the current keyframe, no loader workers.
OVERFIT_OVERRIDES = [
    "data.targets.sources=['oracle']",
    "data.targets.adjacent_keyframes=0",
    "data.targets.num_rays=1000000",
    "data.targets.max_unlabelled_share=1.0",
    "data.workers=0",
    "model.loss.class_counts=''",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, "model.loss.query_weight=0 train.lr=1e-3")
    parser.add_argument("--index", type=int, default=0, help="training keyframe (default 0)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    parser.add_argument("--rays", type=int, default=2048, help="rays per step (default 2048)")
    parser.add_argument("--every", type=int, default=50, help="score every N steps (default 50)")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.1, 0.2, 0.5, 1.0, 2.0, 4.0],
        help="density thresholds (per metre) of the geometry IoU (default %(default)s)",
    )
    parser.add_argument(
        "--goal-abs-rel", type=float, default=0.05, help="AbsRel to reach (default 0.05)"
    )
    parser.add_argument(
        "--goal-iou", type=float, default=70.0, help="geometry IoU %% to reach (default 70)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", help="write the scores of every scoring step to this JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = load_experiment(args.config, OVERFIT_OVERRIDES + args.cfg_options)
    except STARTUP_ERRORS as err:
        return startup_error(err)
    if config.model.loss.occ3d_weight or config.model.loss.occ3d_density_weight:
        print("warning: the config has a 3D loss on; this is no longer a 2D-only check")
    started = time.perf_counter()
    try:
        _, history = overfit_keyframe(
            config, args.index, args.steps, args.rays, args.thresholds, args.every
        )
    except STARTUP_ERRORS + (IndexError,) as err:
        return startup_error(err)
    seconds = time.perf_counter() - started
    last = history[-1]
    reached = last["abs_rel"] <= args.goal_abs_rel and last["geometry_iou"] >= args.goal_iou
    print(
        f"after {args.steps} steps ({seconds / 60:.1f} min): AbsRel {last['abs_rel']:.3f} "
        f"(goal <= {args.goal_abs_rel}), geometry IoU {last['geometry_iou']:.1f} "
        f"(goal >= {args.goal_iou}): {'reached' if reached else 'NOT reached'}"
    )
    if args.out:
        atomic_save_json(
            args.out,
            dict(config=args.config, overrides=args.cfg_options, seconds=seconds, history=history),
        )
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
