#!/usr/bin/env python
"""The whole renderlss loop on the embedded synthetic dataset, on CPU, in one command.

Runs, printing each command as a user would type it:
  1. tools/make_synthetic.py    the procedural world as a nuScenes-format dataroot (resumable)
  2. tools/create_data.py       info files with a by-scene train/val split
  3. a Dataset summary          what one training sample holds
  4. tools/class_frequencies.py class counts of ray targets and voxels for the loss weights
  5. tools/train.py             train the demo config (resumes an interrupted demo)
  6. tools/test.py              Occ3D mIoU, RayIoU and depth errors on the held-out scene,
                                next to trivial baselines
  7. tools/visualize.py         rendered depth / semantics and occupancy pictures
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from renderlss.data.dataset import OccDataset
from renderlss.engine.experiment import load_experiment
from renderlss.eval.metrics import miou_key

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic_demo.py"


def run(args: list[str]) -> None:
    """Run a tool like a user would; stop the demo with its exit code if it fails."""
    print(f"\n$ {shlex.join(args)}", flush=True)
    done = subprocess.run([sys.executable, *args], cwd=ROOT)
    if done.returncode:
        sys.exit(done.returncode)


def dataset_summary(config) -> None:
    """Print what the training Dataset yields for its first sample and overall."""
    dataset = OccDataset(config.data.train_infos, config.data, train=True)
    sample = dataset[0]
    print(f"\nDataset: {len(dataset)} training keyframes; sample 0 ({sample['meta']['token']}):")
    for key in ("img", "intrinsic", "img_aug", "cam2ego", "voxel_semantics", "mask_camera"):
        if key in sample:
            print(f"  {key:<16} {tuple(sample[key].shape)} {sample[key].dtype}")
    for key, value in sample["targets"].items():
        print(f"  targets.{key:<8} {tuple(value.shape)} {value.dtype}")
    depth = sample["targets"]["depth"].numpy()
    sem = sample["targets"]["semantics"].numpy()
    names = config.data.classes.occ_class_names
    present = [names[c] for c in np.unique(sem) if c < len(names)]
    print(f"  target depth {depth[depth > 0].min():.1f}..{depth.max():.1f} m; classes: {present}")


def summary_metrics(config) -> list[str]:
    """The metrics the demo prints: both mIoU means (their class counts from the config),
    geometry IoU, RayIoU, depth AbsRel, and the baselines' numbers."""
    classes = config.data.classes.occ_class_names
    all_classes = miou_key(len(classes))
    subset = miou_key(len(classes) - len(config.eval.subset_exclude))
    return [
        all_classes,
        subset,
        "geometry_IoU",
        "RayIoU",
        "depth/lidar/abs_rel",
        "depth/oracle/abs_rel",
        f"baseline/all_free/{all_classes}",
        f"baseline/column_majority/{all_classes}",
        "baseline/column_majority/geometry_IoU",
        "baseline/column_majority/RayIoU",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/synthetic", help="synthetic dataroot to use")
    parser.add_argument("--work-dir", default="work_dirs/synthetic_demo")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--keyframes", type=int, default=10)
    parser.add_argument("--steps", type=int, help="training steps (default: the config's)")
    return parser.parse_args(argv)


def demo_overrides(infos: Path, work: Path, steps: int | None) -> list[str]:
    """Config overrides pointing the demo config at the generated files."""
    # Paths need no quotes: a value that is not a Python literal is taken as a string.
    overrides = [
        f"data.train_infos={infos / 'renderlss_infos_train.pkl'}",
        f"data.val_infos={infos / 'renderlss_infos_val.pkl'}",
        f"model.loss.class_counts={infos / 'class_counts.json'}",
        f"model.loss.occ3d_class_counts={infos / 'voxel_class_counts.json'}",
        f"train.work_dir={work}",
    ]
    if steps:
        overrides.append(f"train.max_steps={steps}")
    return overrides


def prepare_data(
    args: argparse.Namespace, config, data: Path, infos: Path, overrides: list[str]
) -> None:
    """Steps 1-4: the synthetic dataroot, its info files, a sample, the class counts."""
    grid = config.data.grid
    grid_args = [str(v) for v in (*grid.point_cloud_range, grid.voxel_size[0])]
    run(["tools/make_synthetic.py", "--out", str(data), "--scenes", str(args.scenes),
         "--keyframes", str(args.keyframes), "--grid", *grid_args])  # fmt: skip
    run(["tools/create_data.py", "--dataroot", str(data), "--version", "v1.0-synthetic",
         "--out-dir", str(infos)])  # fmt: skip
    dataset_summary(config)
    for source, name in (("rays", "class_counts.json"), ("occ", "voxel_class_counts.json")):
        out = str(infos / name)
        run(["tools/class_frequencies.py", str(CONFIG), "--source", source, "--out", out,
             "--cfg-options", *overrides])  # fmt: skip


def train_and_evaluate(config, overrides: list[str], work: Path) -> tuple[Path, Path, Path]:
    """Steps 5-7: train, evaluate next to the baselines, draw pictures.

    Returns:
        The final checkpoint, the metrics file and the picture folder.
    """
    cfg_options = ["--cfg-options", *overrides]
    run(["tools/train.py", str(CONFIG), "--resume", *cfg_options])
    checkpoint = work / f"step_{config.train.max_steps:06d}.pth"
    metrics_path = work / "metrics_val.json"
    run(["tools/test.py", str(CONFIG), str(checkpoint), "--out", str(metrics_path),
         "--baselines", *cfg_options])  # fmt: skip
    vis_dir = work / "vis"
    run(["tools/visualize.py", str(CONFIG), str(checkpoint), "--range", "0", "2",
         "--out-dir", str(vis_dir), *cfg_options])  # fmt: skip
    return checkpoint, metrics_path, vis_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, work = Path(args.data), Path(args.work_dir)
    infos = data / "infos"
    overrides = demo_overrides(infos, work, args.steps)
    config = load_experiment(CONFIG, overrides)
    if len(set(config.data.grid.voxel_size)) != 1:
        raise SystemExit("the demo generates labels on cubic voxels only")
    started = time.perf_counter()
    prepare_data(args, config, data, infos, overrides)
    checkpoint, metrics_path, vis_dir = train_and_evaluate(config, overrides, work)
    metrics = json.loads(metrics_path.read_text())["metrics"]
    minutes = (time.perf_counter() - started) / 60
    print(f"\nDemo finished in {minutes:.1f} min.")
    for key in summary_metrics(config):
        if metrics.get(key) is not None:
            print(f"  {key:<40} {metrics[key]:.4f}")
    print(f"Checkpoint:  {checkpoint}")
    print(f"Pictures:    {vis_dir}")
    print(f"TensorBoard: tensorboard --logdir {work / 'tb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
