#!/usr/bin/env python
"""Draw what a checkpoint predicts for evaluation samples, next to the targets.

Per sample, four PNG files in --out-dir (headless, CPU is enough):

- ``<i>_<token>_depth.png``: per camera image | LiDAR depth | rendered depth | relative error;
- ``<i>_<token>_semantics.png``: per camera image | target classes (those of
  eval.ground_truth_dir or the synthetic oracle when there are some, else the projected
  LiDAR's) | rendered classes (argmax of the logits;
  free where the ray met nothing);
- ``<i>_<token>_bev.png`` and ``..._perspective.png``: predicted occupancy next to the Occ3D
  ground truth, top-down and oblique, through the evaluation mask;
- with --range-image, ``<i>_<token>_range.png``: the keyframe's LiDAR sweep as a spherical
  range image (range colours, and lidarseg classes where the sample has them).

Cameras are rendered every eval.image_stride pixels (see docs/evaluation.md).

Examples:
    python tools/visualize.py configs/synthetic_demo.py CKPT --index 0 --out-dir vis/
    python tools/visualize.py CONFIG CKPT --range 0 10 --out-dir vis/ \\
        --cfg-options eval.image_stride=2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from renderlss.engine.cli import (
    STARTUP_ERRORS,
    add_evaluation_arguments,
    setup_from_arguments,
    startup_error,
)
from renderlss.engine.evaluation import lidar_source, predicted_volumes
from renderlss.engine.pictures import sample_pictures
from renderlss.engine.range_image_pictures import sweep_range_picture
from renderlss.labels.artifacts import shard_indices
from renderlss.train.distributed import cleanup, rank, world_size
from renderlss.vis import save_png


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_evaluation_arguments(parser, default_split="val")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, help="one sample of the split (default 0)")
    which.add_argument("--range", type=int, nargs=2, metavar=("A", "B"), help="samples A <= i < B")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder of the PNG files")
    parser.add_argument(
        "--depth-range",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="metres of the depth colour map (default: the model's depth bins)",
    )
    parser.add_argument(
        "--columns", type=int, default=1, help="camera panels per row (default %(default)s)"
    )
    parser.add_argument(
        "--range-image",
        action="store_true",
        help="also draw the keyframe's LiDAR sweep as a range image (<i>_<token>_range.png)",
    )
    return parser.parse_args(argv)


def selected_indices(args: argparse.Namespace, size: int) -> list[int]:
    """The sample indices asked for, checked against the split's ``size``."""
    start, stop = args.range if args.range else (args.index or 0, (args.index or 0) + 1)
    if not 0 <= start < stop <= size:
        raise ValueError(f"samples [{start}, {stop}) are outside the split's [0, {size})")
    return list(range(start, stop))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        setup = setup_from_arguments(args)
        indices = selected_indices(args, len(setup.dataset))
    except STARTUP_ERRORS as err:
        return startup_error(err)
    bins = setup.config.model.depth.bins
    depth_range = tuple(args.depth_range or (bins.d_min, bins.d_max))
    lidar = lidar_source(setup.config, setup.dataset.dataroot)
    # Under torchrun every process draws its share of the samples.
    mine = [indices[i] for i in shard_indices(len(indices), (rank(), world_size()))]
    position = 0
    for batch, predictions in predicted_volumes(
        setup.model, setup.dataset, setup.eval_config, setup.dist.device, indices=mine
    ):
        for b, meta in enumerate(batch["meta"]):
            stem = f"{mine[position]:04d}_{meta['token']}"
            position += 1
            pictures = sample_pictures(
                setup.model,
                setup.config,
                setup.eval_config,
                setup.dataset,
                batch,
                predictions,
                b,
                lidar,
                depth_range,
                args.columns,
            )
            if args.range_image:
                info = setup.dataset.infos[mine[position - 1]]
                pictures["range"] = sweep_range_picture(
                    info, setup.dataset.dataroot, setup.config.data.classes, depth_range[1]
                )
            for name, picture in pictures.items():
                path = args.out_dir / f"{stem}_{name}.png"
                save_png(path, picture)
                print(path)
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
