"""Where the rendered depth of a checkpoint goes wrong, against the ground-truth depth maps.

Renders every camera of the evaluation split at ``eval.image_stride`` (as ``tools/test.py``
does for ``depth/oracle/...``) and groups the scored pixels by the class of the surface they
see (where the ground truth has classes), by its distance, by the rendered opacity and, where
the split has Occ3D labels, by the label of the voxel the rendered surface lies in (a ray
that stops in a free voxel the cameras see met a haze or floater in empty space; one that
stops in an unseen free voxel went through a surface). Each
group's row has its share of the pixels, its AbsRel, its part of the pooled AbsRel (the
parts of one grouping sum to the pooled AbsRel), the median signed error and δ<1.25.

The ground truth is the synthetic oracle, or the folder of ``eval.ground_truth_dir`` (depth
maps of your own, docs/formats.md).

Examples:
    python tools/depth_breakdown.py configs/synthetic_2d.py work_dirs/synthetic_2d/step_000500.pth
    python tools/depth_breakdown.py CONFIG CKPT --out breakdown.json \\
        --cfg-options eval.ground_truth_dir='data/mine/depth_maps'
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from renderlss.data.classes import ClassesConfig
from renderlss.engine.cli import (
    STARTUP_ERRORS,
    add_evaluation_arguments,
    setup_from_arguments,
    startup_error,
)
from renderlss.engine.evaluation import ground_truth_pixels, predicted_volumes, sample_info
from renderlss.engine.full_image import camera_rays
from renderlss.eval.depth_breakdown import (
    DISTANCE_BANDS,
    OPACITY_BANDS,
    band_groups,
    class_groups,
    end_voxel_groups,
    format_breakdown,
    group_errors,
    value_at_depth,
)
from renderlss.io import atomic_save_json
from renderlss.records.oracle import ground_truth_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_evaluation_arguments(parser, default_split="val")
    parser.add_argument("--out", help="write the tables to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def collect_pixels(setup, progress: bool) -> dict[str, np.ndarray]:
    """Rendered depth, opacity, true depth and class ([M] each, class -1 where the ground
    truth has none) of every scored pixel of the split, and with Occ3D labels the label of
    the voxel holding each rendered surface and its camera mask (``end_label``,
    ``end_seen``)."""
    config, eval_config, dataset = setup.config, setup.eval_config, setup.dataset
    truth_dir = ground_truth_folder(dataset.dataroot, eval_config.ground_truth_dir)
    if truth_dir is None:
        raise FileNotFoundError(
            f"{dataset.dataroot}: no oracle/ folder and no eval.ground_truth_dir: "
            "nothing to compare the rendered depth with"
        )
    cameras = list(config.data.cameras)
    ends = ("end_label", "end_seen") if dataset.loads_occ else ()
    names = ("pred", "opacity", "target", "cls") + ends
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for batch, predictions in predicted_volumes(
        setup.model, dataset, eval_config, setup.dist.device, progress
    ):
        for b, meta in enumerate(batch["meta"]):
            info = sample_info(dataset, meta)
            bev_aug = np.asarray(meta["bev_aug"], dtype=np.float64)
            for pixels in ground_truth_pixels(
                setup.model, predictions, b, info, bev_aug, cameras, truth_dir,
                eval_config.image_stride, config.data.grid,
            ):  # fmt: skip
                keep = (pixels.depth > eval_config.min_depth) & (
                    pixels.depth < eval_config.max_depth
                )
                rendered = pixels.rendered.depth.ravel()[keep]
                parts["pred"].append(rendered)
                parts["opacity"].append(pixels.rendered.opacity.ravel()[keep])
                parts["target"].append(pixels.depth[keep])
                parts["cls"].append(
                    np.full(keep.sum(), -1)
                    if pixels.semantics is None
                    else pixels.semantics[keep].astype(int)
                )
                if dataset.loads_occ:
                    rays = camera_rays(pixels.uv[keep], info["cams"][pixels.camera], info, bev_aug)
                    geometry = [rays[k].numpy() for k in ("origins", "dirs", "z_per_t")]
                    for name, field in zip(ends, ("voxel_semantics", "mask_camera")):
                        volume = batch[field][b].cpu().numpy()
                        parts[name].append(
                            value_at_depth(*geometry, rendered, volume, config.data.grid)
                        )
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["pred"] = arrays["pred"].clip(eval_config.min_depth, eval_config.max_depth)
    # A sum of weights can exceed 1 by float rounding; the opacity bands end at 1.
    arrays["opacity"] = arrays["opacity"].clip(0.0, 1.0)
    return arrays


def breakdown(arrays: dict[str, np.ndarray], classes: ClassesConfig) -> dict[str, dict]:
    """The grouping tables: all pixels, by class (where known), by distance, by opacity and
    (with ``end_label``) by the label of the voxel the rendered surface lies in."""
    groupings = {
        "all": {"all pixels": np.ones(len(arrays["target"]), dtype=bool)},
        "class": class_groups(arrays["cls"], list(classes.occ_class_names)),
        "distance": band_groups(arrays["target"], DISTANCE_BANDS, "m"),
        "opacity": band_groups(arrays["opacity"], OPACITY_BANDS, "opacity"),
    }
    if "end_label" in arrays:
        groupings["rendered surface's voxel label"] = end_voxel_groups(
            arrays["end_label"], arrays["end_seen"], classes.free_index, classes.ignore_index
        )
    return {
        name: group_errors(arrays["pred"], arrays["target"], arrays["opacity"], groups)
        for name, groups in groupings.items()
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        setup = setup_from_arguments(args)
        arrays = collect_pixels(setup, progress=not args.no_progress)
    except STARTUP_ERRORS as err:
        return startup_error(err)
    tables = breakdown(arrays, setup.config.data.classes)
    for name, rows in tables.items():
        print(f"\nrendered depth by {name}:\n{format_breakdown(rows)}")
    if args.out:
        atomic_save_json(args.out, dict(checkpoint=args.checkpoint, tables=tables))
        print(f"\ntables written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
