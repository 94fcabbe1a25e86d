#!/usr/bin/env python
"""Evaluate a checkpoint: Occ3D mIoU, RayIoU, rendered depth and the depth net's lifted
depth (depth/lifting/..., depth/lifting_edge/... near depth edges; docs/evaluation.md).

Examples:
    python tools/test.py configs/synthetic_demo.py work_dirs/synthetic_demo/step_000600.pth
    python tools/test.py CONFIG CKPT --out metrics.json --baselines --cfg-options eval.mask='lidar'
    tools/dist_test.sh CONFIG CKPT 8 --out metrics.json      # torchrun, one process per GPU

Prints the per-class tables and writes the metrics as JSON (NaN as null) when --out is given.
"""

from __future__ import annotations

import argparse
import sys

from renderlss.configuration import to_dict
from renderlss.engine.cli import (
    RUN_ERRORS,
    STARTUP_ERRORS,
    add_evaluation_arguments,
    setup_from_arguments,
    split_infos,
    startup_error,
)
from renderlss.engine.evaluation import eval_dataset, evaluate, fit_baselines, fit_depth_prior
from renderlss.eval.metrics import json_safe
from renderlss.io import atomic_save_json
from renderlss.train.distributed import cleanup, is_main_process

DEPTH_HEADLINES = ("depth/lidar/abs_rel", "depth/oracle/abs_rel", "depth/lifting/abs_rel")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_evaluation_arguments(parser, default_split="val")
    parser.add_argument("--out", help="write the metrics to this JSON file")
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="also score the all-free and column-majority occupancy baselines and the "
        "images-blind depth prior (all fitted on data.train_infos: its labeled keyframes when "
        "data.unlabeled.keyframe_fraction treats some as unlabeled)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def is_headline(key: str) -> bool:
    """The metrics of the one-line summary: the mIoU means, RayIoU, depth AbsRel."""
    return key.startswith("mIoU_") or key == "RayIoU" or key in DEPTH_HEADLINES


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        setup = setup_from_arguments(args)
        baselines, depth_prior = None, None
        if args.baselines:
            train_set = eval_dataset(setup.config, split_infos(setup.config.data, "train"))
            baselines = fit_baselines(train_set, setup.config, setup.eval_config)
            depth_prior = fit_depth_prior(train_set, setup.config, setup.eval_config)
    except STARTUP_ERRORS as err:
        return startup_error(err)
    try:
        result = evaluate(
            setup.model,
            setup.dataset,
            setup.config,
            setup.eval_config,
            device=setup.dist.device,
            baselines=baselines,
            depth_prior=depth_prior,
            progress=not args.no_progress,
        )
    except RUN_ERRORS as err:
        return startup_error(err)
    if is_main_process():
        print(result.report())
        summary = [f"{k}={v:.4f}" for k, v in result.metrics.items() if is_headline(k)]
        print(f"\n{int(result.metrics['num_samples'])} samples: {' '.join(summary)}")
        if args.out:
            atomic_save_json(
                args.out,
                dict(
                    config=args.config,
                    checkpoint=args.checkpoint,
                    weights=args.weights,
                    split=args.split,
                    infos=setup.dataset.source,
                    eval=to_dict(setup.eval_config),
                    metrics=json_safe(result.metrics),
                ),
            )
            print(f"metrics written to {args.out}")
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
