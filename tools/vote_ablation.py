"""Per-class quality of 2D labels from superpixel masks for several mask coarsenesses and
minority-cluster radii, computed in memory against the synthetic oracle (no files written).

Example (the table in docs/sam_labels.md):
    python tools/vote_ablation.py --infos data/synthetic/infos/renderlss_infos_val.pkl \\
        --keyframes 3 --merge-scales 8 64 --radii 0 3 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.data.classes import learning_map_table, load_classes  # noqa: E402
from renderlss.eval.label_quality import (  # noqa: E402
    accumulate_confusion,
    quality_table,
    targets_label_image,
)
from renderlss.labels.mask_sources import SuperpixelMaskSource  # noqa: E402
from renderlss.labels.mask_voting import vote_labels  # noqa: E402
from renderlss.labels.semantic_labels import LabelSettings, image_size  # noqa: E402
from renderlss.records.infos import load_infos  # noqa: E402
from renderlss.records.oracle import load_oracle, oracle_path  # noqa: E402
from renderlss.targets.lidar import DEFAULT_EGO_BOX, DEFAULT_MIN_DEPTH  # noqa: E402
from renderlss.targets.sources import LidarTargetSource  # noqa: E402

CLASSES = Path(__file__).resolve().parents[1] / "configs/_base_/occ3d_nuscenes.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--infos", required=True, type=Path, help="info pickle (synthetic)")
    parser.add_argument("--keyframes", type=int, default=3, help="evenly spaced keyframes")
    parser.add_argument(
        "--merge-scales", type=float, nargs="+", default=[8.0], help="superpixel merge_scale"
    )
    parser.add_argument(
        "--radii", type=float, nargs="+", default=[0.0, 5.0], help="minority radii (pixels)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metadata, infos = load_infos(args.infos)
    dataroot, cameras = metadata["dataroot"], list(metadata["cameras"])
    classes = load_classes(CLASSES)
    num_classes, ignore = len(classes.occ_class_names), classes.ignore_index
    voters = LidarTargetSource(
        dataroot, learning_map_table(classes), ignore, DEFAULT_EGO_BOX, DEFAULT_MIN_DEPTH
    )
    settings = LabelSettings()
    confusions: dict[str, np.ndarray] = {}

    def add(name: str, labels: np.ndarray, truth: np.ndarray) -> None:
        confusion = confusions.setdefault(
            name, np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
        )
        accumulate_confusion(confusion, labels, truth, ignore)

    picks = np.linspace(0, len(infos) - 1, args.keyframes).round().astype(int)
    for info in (infos[i] for i in picks):
        targets = voters(info, cameras)
        for cam in cameras:
            cam_info, where = info["cams"][cam], f"sample {info['token']} {cam}"
            size = image_size(cam_info, where)
            _, truth = load_oracle(oracle_path(dataroot, cam, cam_info["data_path"]), where, size)
            add("points alone", targets_label_image(targets[cam], size, ignore), truth)
            for scale in args.merge_scales:
                masks = SuperpixelMaskSource(merge_scale=scale)
                segments = masks(cam, Path(dataroot) / cam_info["data_path"], size)
                for radius in args.radii:
                    labels, _ = vote_labels(
                        segments, targets[cam], num_classes, ignore, settings.min_votes,
                        settings.min_purity, where, radius, settings.minority_min_votes,
                    )  # fmt: skip
                    add(f"merge {scale:g}, R {radius:g}", labels, truth)
    print(quality_table(confusions, classes.occ_class_names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
