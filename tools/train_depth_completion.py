"""Learned second stage of depth completion: train the image-guided network on a dense depth
folder of the training scenes, fill the empty pixels of a dense depth folder with it, and
compare the stages against the exact depth by distance band.

  train     fit the network on tools/make_dense_depth.py output (targets: its measured pixels,
            inputs: random subsets of its pixels with rectangles cut out; never the oracle);
            rerunning with the same --checkpoint resumes, a larger --steps continues
  apply     copy a dense depth folder, its empty pixels filled where the network is sure
            (stored confidence --level, below the classical stage's 0.5); resumable
  evaluate  coverage and AbsRel per true-distance band (0-10, 10-20, 20-40, >40 m) of the
            accumulated, + classical and + learned pixels of a folder, against the oracle

See docs/dense_depth.md (section "Learned completion").

Examples:
    python tools/make_dense_depth.py --infos data/synthetic/infos/renderlss_infos_train.pkl \\
        --out work_dirs/cmp/dense/train --complete
    python tools/train_depth_completion.py train \\
        --infos data/synthetic/infos/renderlss_infos_train.pkl --dense work_dirs/cmp/dense/train \\
        --checkpoint work_dirs/cmp/completion.pth
    python tools/train_depth_completion.py apply \\
        --infos data/synthetic/infos/renderlss_infos_val.pkl --dense work_dirs/cmp/dense/val \\
        --checkpoint work_dirs/cmp/completion.pth --out work_dirs/cmp/dense/val_learned
    python tools/train_depth_completion.py evaluate \\
        --infos data/synthetic/infos/renderlss_infos_val.pkl --dense work_dirs/cmp/dense/val_learned
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.configuration import ConfigError, from_dict  # noqa: E402
from renderlss.io import atomic_save_json, remove_stale_temp_files  # noqa: E402
from renderlss.labels.completion_quality import (  # noqa: E402
    evaluate_folder_by_band,
    format_band_table,
)
from renderlss.labels.dense_depth import DenseDepthConfig  # noqa: E402
from renderlss.labels.learned_completion import (  # noqa: E402
    CompletionNetConfig,
    CompletionTrainingConfig,
    FillConfig,
    apply_completion_net,
    load_training_samples,
    train_completion_net,
)
from renderlss.records.infos import load_infos  # noqa: E402
from renderlss.records.oracle import ground_truth_folder  # noqa: E402
from renderlss.train.checkpoint import CheckpointError  # noqa: E402

NET, TRAINING, FILL = CompletionNetConfig(), CompletionTrainingConfig(), FillConfig()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "apply", "evaluate"):
        sub = commands.add_parser(name, help=f"{name} (see the description above)")
        sub.add_argument("--infos", required=True, type=Path, help="info pickle of one split")
        sub.add_argument(
            "--dense", required=True, type=Path, help="dense depth folder (make_dense_depth.py)"
        )
        sub.add_argument("--dataroot", help="dataroot (default: the one in the info file)")
        sub.add_argument("--quiet", action="store_true", help="no progress output")
        if name != "evaluate":
            sub.add_argument(
                "--checkpoint", required=True, type=Path, help="network checkpoint file"
            )
    train, apply, evaluate = (commands.choices[n] for n in ("train", "apply", "evaluate"))
    train.add_argument("--steps", type=int, default=TRAINING.steps, help="default %(default)s")
    train.add_argument(
        "--batch-size", type=int, default=TRAINING.batch_size, help="default %(default)s"
    )
    train.add_argument("--lr", type=float, default=TRAINING.lr, help="default %(default)s")
    train.add_argument("--seed", type=int, default=TRAINING.seed, help="default %(default)s")
    train.add_argument(
        "--max-depth",
        type=float,
        default=NET.max_depth,
        help="depth normalisation and largest predicted depth, metres (default %(default)s)",
    )
    train.add_argument(
        "--channels",
        type=int,
        nargs="+",
        default=list(NET.channels),
        help="channels per U-Net level (default %(default)s)",
    )
    train.add_argument(
        "--input-downscale",
        type=int,
        default=NET.input_downscale,
        help="inputs pooled by this factor inside the network (default %(default)s)",
    )
    train.add_argument(
        "--target-min-confidence",
        type=float,
        default=TRAINING.target_min_confidence,
        help="stored confidence a loss target needs (default %(default)s: measured only)",
    )
    apply.add_argument("--out", required=True, type=Path, help="output dense depth folder")
    apply.add_argument(
        "--level",
        type=float,
        default=FILL.level,
        help="stored confidence of a learned pixel (default %(default)s)",
    )
    apply.add_argument(
        "--min-surface-probability",
        type=float,
        default=FILL.min_surface_probability,
        help="below it a pixel counts as sky and stays empty (default %(default)s)",
    )
    apply.add_argument(
        "--max-scale",
        type=float,
        default=FILL.max_scale,
        help="largest predicted Laplacian scale of log depth (~ relative error) written "
        "(default %(default)s)",
    )
    evaluate.add_argument(
        "--ground-truth-dir", default="", help="exact depth maps (default: <dataroot>/oracle)"
    )
    evaluate.add_argument(
        "--level",
        type=float,
        default=FILL.level,
        help="stored confidence of the learned pixels (default %(default)s)",
    )
    evaluate.add_argument("--json", type=Path, help="also write the numbers here")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    metadata, infos = load_infos(args.infos)
    dataroot = args.dataroot or metadata.get("dataroot")
    if not dataroot:
        print(f"error: {args.infos} records no dataroot; pass --dataroot", file=sys.stderr)
        return 2
    cameras = list(metadata.get("cameras") or (infos[0]["cams"] if infos else []))
    if args.command == "train":
        net = from_dict(
            CompletionNetConfig,
            dict(
                max_depth=args.max_depth,
                channels=tuple(args.channels),
                input_downscale=args.input_downscale,
            ),
            "net",
        )
        training = from_dict(
            CompletionTrainingConfig,
            dict(
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.seed,
                target_min_confidence=args.target_min_confidence,
            ),
            "training",
        )
        samples = load_training_samples(infos, dataroot, args.dense, cameras)
        print(f"{len(samples)} images of {args.infos}")

        def log(step: int, losses: dict[str, float]) -> None:
            if not args.quiet and (step % 10 == 0 or step == training.steps):
                print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))

        remove_stale_temp_files(args.checkpoint.parent, recursive=False)
        train_completion_net(samples, net, training, args.checkpoint, log)
        print(f"checkpoint: {args.checkpoint}")
        return 0
    if args.command == "apply":
        fill = from_dict(
            FillConfig,
            dict(
                level=args.level,
                min_surface_probability=args.min_surface_probability,
                max_scale=args.max_scale,
            ),
            "fill",
        )
        remove_stale_temp_files(args.out)
        summary = apply_completion_net(
            infos,
            dataroot,
            args.dense,
            args.out,
            args.checkpoint,
            fill,
            cameras,
            show_progress=not args.quiet,
        )
        print(summary.format())
        return 1 if summary.failed else 0
    truth_dir = ground_truth_folder(dataroot, args.ground_truth_dir)
    if truth_dir is None:
        print(f"error: {dataroot} has no oracle/; pass --ground-truth-dir", file=sys.stderr)
        return 2
    manifest = json.loads((args.dense / "manifest.json").read_text())
    filled_confidence = manifest["config"].get(
        "filled_confidence", DenseDepthConfig().filled_confidence
    )
    results = evaluate_folder_by_band(
        infos, args.dense, truth_dir, cameras, filled_confidence, args.level
    )
    print(f"{len(infos)} keyframes x {len(cameras)} cameras of {args.infos}")
    print(format_band_table(results))
    if args.json:
        atomic_save_json(args.json, results)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
