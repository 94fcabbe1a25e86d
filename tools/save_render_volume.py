#!/usr/bin/env python
"""Save a trained network's volume and one sample's target rays for the render benchmark.

The packed sampler skips what a volume leaves empty, so its speed depends on the volume:
random volumes say little about a trained one. This writes the density [1, 1, X, Y, Z],
logits [1, K, X, Y, Z] and the sample's training target rays (origins/dirs [1, R, 3],
z_per_t [1, R]) that ``tools/benchmark.py --only render --render-volume FILE`` renders.

Example:
    python tools/save_render_volume.py configs/synthetic_demo.py \\
        work_dirs/synthetic_demo/step_000500.pth --out bench/demo_volume.pt
    python tools/benchmark.py --only render --scales demo --render-volume bench/demo_volume.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from renderlss.data.collate import collate, to_device
from renderlss.data.dataset import OccDataset
from renderlss.engine.build import load_trained_model
from renderlss.engine.cli import (
    STARTUP_ERRORS,
    add_evaluation_arguments,
    split_infos,
    startup_error,
)
from renderlss.engine.experiment import load_experiment
from renderlss.io import atomic_save_torch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_evaluation_arguments(parser, default_split="val")
    parser.add_argument("--index", type=int, default=0, help="sample of the split (default 0)")
    parser.add_argument("--out", required=True, help="torch file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_experiment(args.config, args.cfg_options)
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(auto if args.device == "auto" else args.device)
        model = load_trained_model(config, args.checkpoint, args.weights, device)
        dataset = OccDataset(split_infos(config.data, args.split), config.data, train=False)
    except STARTUP_ERRORS as err:
        return startup_error(err)
    if not 0 <= args.index < len(dataset):
        return startup_error(
            IndexError(f"--index {args.index}: the {args.split} split has {len(dataset)} samples")
        )
    batch = collate([dataset[args.index]])
    with torch.no_grad():
        predictions = model.volume(to_device(batch, device))
    targets = batch["targets"]
    saved = dict(
        density=predictions["density"].cpu(),
        logits=predictions["logits"].cpu(),
        origins=targets["origins"],
        dirs=targets["dirs"],
        z_per_t=targets["z_per_t"],
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_torch(args.out, saved)
    rays = targets["origins"].shape[1]
    print(f"wrote {args.out}: volume {tuple(saved['density'].shape[2:])}, {rays} rays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
