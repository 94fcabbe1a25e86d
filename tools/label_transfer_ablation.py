"""How well KNN label transfer classes the unlabelled LiDAR sweeps, and what it does for the 2D
labels, measured on the synthetic dataset (which knows every point's class).

Per-sweep truth: the dataset stores lidarseg labels for keyframe sweeps only, but its world
is a deterministic function of the generator config recorded in
``<dataroot>/synthetic_meta/config.json``. The tool rebuilds each scene's world, re-casts
every sweep of a window (checked bit-identical to the stored point file, else it stops) and
takes the class and owning actor of every return; a point is *moving* when its actor has a
non-zero speed.

Parts:
  1. transfer accuracy and coverage of the unlabelled points, by K and radius, for points of
     moving objects and of everything else, and per class at the chosen K and radius;
  2. 2D labels (superpixel masks) against the oracle with keyframe-only votes and with the
     transferred sweeps' votes;
  3. transfer throughput per keyframe: timed on a synthetic keyframe with 10 unlabelled sweeps
     and scaled to nuScenes' 34,752 points per sweep, extrapolated to its 34,149 keyframes.

Example (the tables in docs/sam_labels.md):
    python tools/label_transfer_ablation.py --infos data/synthetic/infos/renderlss_infos_val.pkl \\
        --keyframes 5 --json docs/label_transfer_ablation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.data.classes import learning_map_table, load_classes  # noqa: E402
from renderlss.eval.label_quality import accumulate_confusion, quality_table  # noqa: E402
from renderlss.geometry import transform_points  # noqa: E402
from renderlss.io import atomic_save_json  # noqa: E402
from renderlss.labels.dense_depth import (  # noqa: E402
    DenseDepthConfig,
    group_by_scene,
    scene_context,
)
from renderlss.labels.depth_accumulation import (  # noqa: E402
    LidarFrame,
    sweep_points_in_ego,
    window_frames,
)
from renderlss.labels.label_transfer import (  # noqa: E402
    UNKNOWN,
    LabelTransferConfig,
    PointClasses,
    accumulate_labelled_frames,
    split_like_accumulation,
    transfer_labels,
)
from renderlss.labels.mask_sources import SuperpixelMaskSource  # noqa: E402
from renderlss.labels.mask_voting import vote_labels  # noqa: E402
from renderlss.labels.semantic_labels import LabelSettings, image_size  # noqa: E402
from renderlss.labels.sweep_voters import TransferredVoterSource  # noqa: E402
from renderlss.records.infos import load_infos  # noqa: E402
from renderlss.records.oracle import load_oracle, oracle_path  # noqa: E402
from renderlss.synthetic import rig, sensors  # noqa: E402
from renderlss.synthetic.config import synthetic_config  # noqa: E402
from renderlss.synthetic.tables import plan_scene  # noqa: E402
from renderlss.targets.lidar import DEFAULT_EGO_BOX, DEFAULT_MIN_DEPTH, outside_box  # noqa: E402
from renderlss.targets.sources import LidarTargetSource  # noqa: E402

CLASSES = Path(__file__).resolve().parents[1] / "configs/_base_/occ3d_nuscenes.py"
NUSCENES_POINTS_PER_SWEEP = 34_752
NUSCENES_KEYFRAMES = 34_149
PARTS = ("transfer", "labels", "throughput")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--infos", required=True, type=Path, help="info pickle (synthetic)")
    parser.add_argument("--keyframes", type=int, default=5, help="evenly spaced keyframes")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 9], help="K values")
    parser.add_argument(
        "--radii", type=float, nargs="+", default=[0.25, 0.5, 1.0], help="radii (metres)"
    )
    parser.add_argument(
        "--purities",
        type=float,
        nargs="+",
        default=[LabelSettings().min_purity],
        help="--min-purity values of the 2D labels (part 2)",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="which parts to run (default all)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    return parser.parse_args(argv)


class SweepTruth:
    """Class and moving flag of every return of the stored sweeps, re-cast from the world."""

    def __init__(self, dataroot: Path, point_classes: PointClasses) -> None:
        recorded = json.loads((dataroot / "synthetic_meta" / "config.json").read_text())
        # The class taxonomy is the generator's default; its derived fields are recorded too.
        self.config = synthetic_config(**{k: v for k, v in recorded.items() if k != "classes"})
        self.dataroot = dataroot
        self.point_classes = point_classes
        self.plans: dict[int, object] = {}

    def __call__(self, scene_name: str, frame: LidarFrame) -> tuple[np.ndarray, np.ndarray]:
        """Class [P] int64 and moving flag [P] bool of the sweep's points that survive the
        ego-body filter, in the order of ``sweep_points_in_ego``."""
        index = int(scene_name.split("-")[-1])
        if index not in self.plans:
            self.plans = {index: plan_scene(self.config, index)}
        plan = self.plans[index]
        planned = next(
            f for f in plan.frames if f.channel == rig.LIDAR_NAME and f.filename == frame.data_path
        )
        scan = sensors.scan_lidar(
            plan.world,
            planned.t,
            self.config.azimuth_steps,
            self.config.classes.lidarseg_category_names,
            self.config.lidar_max_range,
        )
        stored = np.fromfile(self.dataroot / frame.data_path, dtype=np.float32).reshape(-1, 5)
        if not np.array_equal(stored, scan.points):
            raise ValueError(f"{frame.data_path}: re-cast sweep differs from the stored file")
        points_ego = transform_points(frame.lidar2ego, stored[:, :3].astype(np.float64))
        keep = outside_box(points_ego, DEFAULT_EGO_BOX)
        speed = np.array([a.speed for a in plan.world.actors] + [0.0])
        classes = self.point_classes.learning_table[scan.labels].astype(np.int64)
        return classes[keep], speed[scan.actor][keep] != 0


def window_truth(truth, info, frames, context, config, dataroot):
    """Truth classes and moving flags of the window's points in the order of
    ``accumulate_labelled_frames`` (static then object points, frame by frame)."""
    parts = {"static": [], "object": [], "static_moving": [], "object_moving": []}
    for frame in frames:
        classes, moving = truth(info["scene_name"], frame)
        points_ego, _ = sweep_points_in_ego(frame, dataroot, config.ego_box)
        for values, name in ((classes, ""), (moving, "_moving")):
            static, riding = split_like_accumulation(
                values.astype(np.int64), points_ego, frame, context.tracks,
                config.box_margin, config.max_box_extrapolation_s,
            )  # fmt: skip
            parts["static" + name].append(static)
            parts["object" + name].append(riding)
    merged = {k: np.concatenate(v) for k, v in parts.items()}
    return (
        np.concatenate([merged["static"], merged["object"]]),
        np.concatenate([merged["static_moving"], merged["object_moving"]]).astype(bool),
    )


def transfer_part(infos, picks, dataroot, point_classes, truth, ks, radii, class_names):
    """Accuracy and coverage of the transferred classes of unlabelled points (part 1)."""
    config = DenseDepthConfig()
    scenes = group_by_scene(infos)
    totals: dict[str, dict[str, np.ndarray]] = {}
    num = point_classes.num_classes
    for info in (infos[i] for i in picks):
        context = scene_context(scenes[info.get("scene_token") or info["scene_name"]])
        frames = window_frames(context.timeline, int(info["timestamp"]), config.window_sweeps)
        cloud, static, objects = accumulate_labelled_frames(
            frames, context.lidarseg_paths, dataroot, point_classes, config.ego_box,
            context.tracks, config.box_margin, config.max_box_extrapolation_s,
        )  # fmt: skip
        true_class, moving = window_truth(truth, info, frames, context, config, dataroot)
        unlabelled = np.concatenate([static, objects]) == UNKNOWN
        for k in ks:
            for radius in radii:
                labelled = transfer_labels(
                    cloud, static, objects, LabelTransferConfig(k, radius), num
                )
                found = np.concatenate([labelled.static_classes, labelled.object_classes])
                row = totals.setdefault(
                    f"K {k}, r {radius:g}",
                    {n: np.zeros((2, num)) for n in ("points", "known", "correct")},
                )
                for flag in (0, 1):
                    chosen = unlabelled & (moving == bool(flag)) & (true_class < num)
                    cls = true_class[chosen]
                    known = found[chosen] != UNKNOWN
                    row["points"][flag] += np.bincount(cls, minlength=num)
                    row["known"][flag] += np.bincount(cls[known], minlength=num)
                    row["correct"][flag] += np.bincount(
                        cls[known & (found[chosen] == cls)], minlength=num
                    )
    return {
        name: {
            "points": row["points"].tolist(),
            "known": row["known"].tolist(),
            "correct": row["correct"].tolist(),
        }
        for name, row in totals.items()
    }


def ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def transfer_tables(results: dict, class_names: list[str], per_class_row: str) -> str:
    lines = [
        "| K, radius | static: coverage | static: accuracy | moving: coverage | moving: accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results.items():
        cells = []
        for flag in (0, 1):
            points, known, correct = (np.sum(row[n][flag]) for n in ("points", "known", "correct"))
            cells += [f"{ratio(known, points):.1%}", f"{ratio(correct, known):.1%}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    row = results[per_class_row]
    lines += [
        "",
        f"Per class at {per_class_row} (unlabelled points; moving | static):",
        "",
        "| class | points (moving / static) | coverage moving | accuracy moving | "
        "coverage static | accuracy static |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c, name in enumerate(class_names):
        points = [row["points"][f][c] for f in (1, 0)]
        if not sum(points):
            continue
        cells = [f"{int(points[0])} / {int(points[1])}"]
        for f in (1, 0):
            cells += [
                f"{ratio(row['known'][f][c], row['points'][f][c]):.1%}",
                f"{ratio(row['correct'][f][c], row['known'][f][c]):.1%}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines).replace("nan%", "–")


def label_part(infos, picks, dataroot, cameras, point_classes, voter_sources, purities):
    """2D label confusions against the oracle for each vote source and purity (part 2)."""
    num, ignore = point_classes.num_classes, point_classes.ignore_index
    settings = LabelSettings()
    masks = SuperpixelMaskSource()
    confusions: dict[str, np.ndarray] = {}
    for info in (infos[i] for i in picks):
        segments = {}
        for cam in cameras:
            cam_info = info["cams"][cam]
            size = image_size(cam_info, cam)
            segments[cam] = masks(cam, Path(dataroot) / cam_info["data_path"], size)
        for name, source in voter_sources.items():
            voters = source(info, cameras)
            for cam in cameras:
                cam_info, where = info["cams"][cam], f"sample {info['token']} {cam}"
                size = image_size(cam_info, where)
                _, truth = load_oracle(
                    oracle_path(dataroot, cam, cam_info["data_path"]), where, size
                )
                for purity in purities:
                    labels, _ = vote_labels(
                        segments[cam], voters[cam], num, ignore, settings.min_votes, purity, where
                    )
                    confusion = confusions.setdefault(
                        f"{name}, purity {purity:g}", np.zeros((num + 1, num + 1), dtype=np.int64)
                    )
                    accumulate_confusion(confusion, labels, truth, ignore)
    return confusions


def throughput(info: dict, infos: list[dict], dataroot: Path, point_classes, ks, radius) -> dict:
    """Seconds of the transfer (not the loading) for one keyframe with 10 unlabelled sweeps
    around it (5 each way) on the synthetic LiDAR, scaled linearly to nuScenes' 34,752
    points per sweep (part 3)."""
    context = scene_context(group_by_scene(infos)[info.get("scene_token") or info["scene_name"]])
    config = DenseDepthConfig()
    frames = window_frames(context.timeline, int(info["timestamp"]), 5)
    cloud, static, objects = accumulate_labelled_frames(
        frames, context.lidarseg_paths, dataroot, point_classes, config.ego_box,
        context.tracks, config.box_margin, config.max_box_extrapolation_s,
    )  # fmt: skip
    unlabelled = int((static == UNKNOWN).sum() + (objects == UNKNOWN).sum())
    scale = 10 * NUSCENES_POINTS_PER_SWEEP / unlabelled
    seconds = {}
    for k in ks:
        start = time.perf_counter()
        transfer_labels(
            cloud, static, objects, LabelTransferConfig(k, radius), point_classes.num_classes
        )
        seconds[k] = (time.perf_counter() - start) * scale
    return dict(points_per_sweep=unlabelled / (len(frames) - 1), seconds=seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metadata, infos = load_infos(args.infos)
    dataroot, cameras = Path(metadata["dataroot"]), list(metadata["cameras"])
    classes = load_classes(CLASSES)
    point_classes = PointClasses(
        learning_map_table(classes), len(classes.occ_class_names), classes.ignore_index
    )
    picks = np.linspace(0, len(infos) - 1, args.keyframes).round().astype(int)
    default = LabelTransferConfig()
    results: dict = dict(keyframes=[infos[i]["token"] for i in picks])
    if "transfer" in args.parts:
        truth = SweepTruth(dataroot, point_classes)
        results["transfer"] = transfer_part(
            infos, picks, dataroot, point_classes, truth, args.ks, args.radii,
            classes.occ_class_names,
        )  # fmt: skip
        per_class_row = f"K {default.k}, r {default.radius:g}"
        print(transfer_tables(results["transfer"], classes.occ_class_names, per_class_row))
    if "labels" in args.parts:
        voter_sources = {
            "keyframe votes": LidarTargetSource(
                dataroot, point_classes.learning_table, classes.ignore_index, DEFAULT_EGO_BOX,
                DEFAULT_MIN_DEPTH,
            ),
            # The keyframe sweep alone through the same projection and hidden-point
            # removal: separates what the extra sweeps do from what that pipeline does.
            "keyframe sweep, hidden removed": TransferredVoterSource(
                infos, dataroot, point_classes, DenseDepthConfig(window_sweeps=0)
            ),
            "transferred sweep votes": TransferredVoterSource(
                infos, dataroot, point_classes, DenseDepthConfig()
            ),
        }  # fmt: skip
        confusions = label_part(
            infos, picks, dataroot, cameras, point_classes, voter_sources, args.purities
        )
        results["labels"] = {name: c.tolist() for name, c in confusions.items()}
        print(quality_table(confusions, classes.occ_class_names))
    if "throughput" in args.parts:
        timing = throughput(
            infos[picks[len(picks) // 2]], infos, dataroot, point_classes, args.ks, default.radius
        )
        results["throughput"] = timing
        print(f"transfer timed on {timing['points_per_sweep']:.0f} unlabelled points per sweep")
        for k, seconds in timing["seconds"].items():
            hours = seconds * NUSCENES_KEYFRAMES / 3600
            print(f"K {k}: {seconds:.2f} s per keyframe (10 x 34,752 points), {hours:.1f} h")
    if args.json:
        atomic_save_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
