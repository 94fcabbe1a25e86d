#!/usr/bin/env python
"""Count how often each class occurs in the training supervision, for the class weights of
the semantic losses (``model.loss.class_counts`` points at the JSON this writes).

  rays: classes of the render-target pixels of every training keyframe (before weighted ray
        sampling, so the balancing does not count itself)
  occ:  Occ3D voxel labels inside the camera mask (for the 3D loss), on the model grid:
        labels on data.label_grid are cropped and pooled to data.grid first

Example:
    python tools/class_frequencies.py configs/synthetic_demo.py \
        --out data/synthetic/infos/class_counts.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tqdm import tqdm

from renderlss.data.dataset import OccDataset
from renderlss.data.render_targets import collect_frame_targets
from renderlss.engine.cli import STARTUP_ERRORS, add_config_arguments, startup_error
from renderlss.engine.experiment import load_experiment
from renderlss.io import atomic_save_json


def count_ray_classes(dataset: OccDataset, num_classes: int, ignore_index: int) -> np.ndarray:
    """[K] counts of target-pixel classes over the keyframes of ``dataset``."""
    counts = np.zeros(num_classes, dtype=np.int64)
    config = dataset.config
    for index in tqdm(range(len(dataset)), desc="rays", unit="sample"):
        info = dataset.infos[index]
        frames = collect_frame_targets(
            info, dataset._lookup, dataset.target_sources, config.cameras, 0
        )
        for targets in frames[0][2].values():
            labels = targets.semantics[targets.semantics != ignore_index]
            counts += np.bincount(labels, minlength=num_classes)[:num_classes]
    return counts


def count_voxel_classes(dataset: OccDataset, num_classes: int) -> np.ndarray:
    """[K] counts of Occ3D labels inside ``mask_camera`` over ``dataset``, on the model grid
    (labels on a larger or finer ``data.label_grid`` cropped and pooled as in training)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for index in tqdm(range(len(dataset)), desc="voxels", unit="sample"):
        labels = dataset.occupancy_labels(dataset.infos[index])
        inside = labels["semantics"][labels["mask_camera"] != 0]
        counts += np.bincount(inside, minlength=num_classes)[:num_classes]
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, "data.workers=0")
    parser.add_argument("--source", choices=["rays", "occ"], default="rays")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    overrides = list(args.cfg_options)
    # No augmentation and, for voxel counts, no render targets are needed.
    overrides += [
        "data.bev_aug.flip_x_prob=0",
        "data.bev_aug.flip_y_prob=0",
        "data.bev_aug.rotate_range=(0,0)",
    ]
    if args.source == "occ":
        overrides += ["data.targets.sources=[]", "data.load_occ=True"]
    try:
        config = load_experiment(args.config, overrides)
        dataset = OccDataset(config.data.train_infos, config.data, train=False)
    except STARTUP_ERRORS as err:
        return startup_error(err)
    classes = config.data.classes
    if args.source == "rays" and not dataset.target_sources:
        print("error: data.targets.sources is empty: no ray classes to count", file=sys.stderr)
        return 2
    try:
        if args.source == "rays":
            counts = count_ray_classes(dataset, classes.num_classes, classes.ignore_index)
        else:
            counts = count_voxel_classes(dataset, classes.num_classes)
    except STARTUP_ERRORS as err:  # a missing or damaged file of one sample
        return startup_error(err)
    names = classes.occ_class_names + ["free"]
    atomic_save_json(
        args.out,
        dict(
            class_names=names,
            counts=counts.tolist(),
            source=args.source,
            infos=config.data.train_infos,
            samples=len(dataset),
        ),
    )
    total = max(int(counts.sum()), 1)
    for name, count in zip(names, counts):
        print(f"{name:<22} {count:>12d} {100 * count / total:6.2f}%")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
