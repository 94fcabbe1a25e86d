#!/usr/bin/env python
"""Train a renderlss model.

Examples:
    python tools/train.py configs/synthetic_demo.py
    python tools/train.py configs/synthetic_demo.py --cfg-options train.max_steps=50 data.workers=0

    python tools/train.py configs/synthetic_demo.py --resume      # latest checkpoint
    tools/dist_train.sh configs/synthetic_demo.py 2                 # two processes

The resolved config is written to ``<work_dir>/config.json`` before training starts, the
per-step records to ``<work_dir>/metrics.jsonl``, TensorBoard events to ``<work_dir>/tb``
and checkpoints to ``<work_dir>/step_*.pth``.

CPU threads per process: train.threads, or with 0 (the default) OMP_NUM_THREADS when set,
else the usable physical cores divided among torchrun's local processes, at least 1
(loader workers sleep most of a CPU step and get no cores of their own). A rank silent
for train.dist_timeout_s seconds (default 600) stops the run with a message naming it.
Known failures (config, checkpoint, missing file, bad sample, diverged run) print one
"error: ..." line and exit with status 2.

Unlabeled frames (data.unlabeled) train through the depth-aware EMA teacher with
train.teacher.enabled=True: thresholds, pseudo-loss weights, start step and ramp, momentum,
depth_aware and the student's jitter are train.teacher options (docs/teacher_student.md);
its monitors are logged as train/teacher/* and the teacher is evaluated with
tools/test.py ... --weights ema.

Loss options (docs/training.md): edge-aware depth supervision weighs the LSS depth loss
up at depth edges of the target depth (model.loss.depth_edge_weight, depth_edge_threshold,
depth_edge_radius; depth_edge_rendered=True also weighs the rendered-depth rays), and
model.loss.semantic_loss="focal" (focal_gamma) turns the rendered-semantic and Occ3D
cross-entropy terms into focal losses with the same class weights.

Hash-grid field decoder (docs/model.md): model.field_decoder.enabled=True decodes density
and logits at every ray sample (and voxel centre) from the voxel features and an Instant-NGP
hash encoding (levels, log2_table_size, features_per_level, base_resolution,
per_level_scale, mlp_width, mlp_hidden_layers); backend "auto" | "torch" | "tcnn"
(tiny-cuda-nn on CUDA where it imports).

Lift options (docs/model.md): model.depth.sampling="pdf" draws model.depth.pdf_samples
depths per feature cell from its depth distribution instead of lifting at every bin centre;
model.depth.pixel_offsets=True lets each cell lift from a learned image offset of at most
model.depth.pixel_offset_range feature cells.
"""

from __future__ import annotations

import argparse
import sys

from renderlss.engine.cli import (
    RUN_ERRORS,
    add_config_arguments,
    configure_cpu_threads,
    startup_error,
)
from renderlss.engine.experiment import load_experiment
from renderlss.engine.trainer import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, "train.lr=1e-3 data.batch_size=2")
    parser.add_argument("--work-dir", help="overrides train.work_dir")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="continue a run: a checkpoint path, or no value for the latest in the work dir",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.cfg_options)
    if args.work_dir:
        overrides.append(f"train.work_dir={args.work_dir!r}")
    try:
        config = load_experiment(args.config, overrides)
        configure_cpu_threads(config)
        train(config, resume=args.resume)
    except RUN_ERRORS as err:
        return startup_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
