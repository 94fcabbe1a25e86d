#!/usr/bin/env python
"""How good the projected-LiDAR depth targets are, against the exact depth maps.

Projects the keyframe sweep of every ``--every``-th keyframe of a split into its cameras as
training does (``data.targets``: ego box, minimum depth) and compares each target with the
ground truth at its pixel: the synthetic oracle, or the folder of ``eval.ground_truth_dir``.
One row per hidden-point setting (``data.targets.lidar_hidden_radius`` and
``lidar_hidden_min_sectors``; radius 0 = every projected point): the share of targets it
removes, the share that lies behind the surface the camera sees (more than 10 % beyond the
truth at the pixel and at every pixel next to it), the good targets it loses and the
targets' AbsRel, overall and by true distance.

Examples:
    python tools/lidar_target_quality.py configs/synthetic_2d.py
    python tools/lidar_target_quality.py configs/synthetic_2d.py --split val --radii 0 8 16 \\
        --sectors 4 3 --out quality.json
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from tqdm import tqdm

from renderlss.data.render_targets import make_target_sources
from renderlss.engine.cli import STARTUP_ERRORS, add_config_arguments, split_infos, startup_error
from renderlss.engine.experiment import load_experiment
from renderlss.eval.target_depth_quality import measure_target_depth
from renderlss.io import atomic_save_json
from renderlss.records.infos import load_infos
from renderlss.records.oracle import ground_truth_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, "data.targets.min_depth=1.0")
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--every", type=int, default=1, help="every n-th keyframe (default 1)")
    parser.add_argument(
        "--radii", type=int, nargs="+", default=[4, 8, 16],
        help="hidden-point radii at 400 px width (default 4 8 16; every projected point, "
        "radius 0, is always measured first and the others compared with it)",
    )  # fmt: skip
    parser.add_argument(
        "--sectors", type=int, nargs="+", default=[4],
        help="quadrants that must hold a nearer point (default 4)",
    )  # fmt: skip
    parser.add_argument("--out", help="write the rows to this JSON file")
    return parser.parse_args(argv)


def settings(radii: list[int], sectors: list[int]) -> list[tuple[int, int]]:
    """(radius, sectors) pairs, first radius 0 (every projected point), which the others are
    compared with; the sectors do not matter without a test."""
    return [(0, 4)] + [(r, s) for r in radii if r > 0 for s in sectors]


def format_table(rows: list[dict]) -> str:
    bands = [name for name in rows[0]["bands"] if name != "all"]
    head = ["radius", "sectors", "targets", "removed", "behind", "good lost", "AbsRel"]
    lines = ["| " + " | ".join(head + [f"behind / AbsRel {b}" for b in bands]) + " |"]
    lines.append("|" + " ---: |" * (len(head) + len(bands)))
    for row in rows:
        every = row["bands"]["all"]
        cells = [
            str(row["radius"]),
            str(row["sectors"]),
            str(every["targets"]),
            f"{row['removed']:.3f}",
            f"{every['behind']:.4f}",
            f"{row['good_lost']:.4f}",
            f"{every['abs_rel']:.3f}",
        ] + [f"{row['bands'][b]['behind']:.3f} / {row['bands'][b]['abs_rel']:.3f}" for b in bands]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.every < 1:
            raise ValueError(f"--every must be >= 1, got {args.every}")
        config = load_experiment(args.config, args.cfg_options)
        infos_or_path = split_infos(config.data, args.split)
        metadata, infos = (
            load_infos(infos_or_path) if isinstance(infos_or_path, str) else infos_or_path
        )
        dataroot = config.data.dataroot or metadata.get("dataroot", "")
        truth_dir = ground_truth_folder(dataroot, config.eval.ground_truth_dir)
        if truth_dir is None:
            raise FileNotFoundError(
                f"{dataroot}: no oracle/ folder and no eval.ground_truth_dir to compare with"
            )
        keyframes = infos[:: args.every]
        rows = []
        for radius, sectors in settings(args.radii, args.sectors):
            targets = replace(
                config.data.targets,
                sources=["lidar"],
                lidar_hidden_radius=radius,
                lidar_hidden_min_sectors=sectors,
            )
            source = make_target_sources(targets, dataroot, config.data.classes)[0]
            progress = tqdm(keyframes, desc=f"radius {radius}, sectors {sectors}", leave=False)
            quality = measure_target_depth(source, progress, list(config.data.cameras), truth_dir)
            bands = quality.summary()
            count, hidden = bands["all"]["targets"], bands["all"]["behind"]
            if not rows:
                plain_count, plain_good = count, count - hidden * count
            good_now = count - hidden * count
            rows.append(
                dict(
                    radius=radius,
                    sectors=sectors,
                    removed=1.0 - count / plain_count,
                    good_lost=1.0 - good_now / plain_good,
                    bands=bands,
                )
            )
    except STARTUP_ERRORS as err:
        return startup_error(err)
    print(format_table(rows))
    if args.out:
        atomic_save_json(args.out, dict(config=args.config, split=args.split, rows=rows))
        print(f"rows written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
