"""The pictures of one evaluated sample: rendered depth and semantics of every camera next to
their targets, and occupancy views next to the ground truth (for tools/visualize.py and the
TensorBoard panels of training)."""

from __future__ import annotations

import numpy as np
from torch import nn

from renderlss.data.dataset import OccDataset
from renderlss.engine.evaluation import sample_info
from renderlss.engine.experiment import ExperimentConfig
from renderlss.engine.full_image import sample_camera_maps
from renderlss.eval.config import EvalConfig
from renderlss.eval.metrics import occ3d_eval_mask
from renderlss.models.occupancy_net import predict_occupancy
from renderlss.records.oracle import ground_truth_folder
from renderlss.targets.sources import TargetSource
from renderlss.vis.sample_panels import occupancy_figures, rig_depth_figure, rig_semantic_figure


def sample_pictures(
    model: nn.Module,
    config: ExperimentConfig,
    eval_config: EvalConfig,
    dataset: OccDataset,
    batch: dict,
    predictions: dict,
    b: int,
    lidar: TargetSource,
    depth_range: tuple[float, float],
    columns: int,
) -> dict[str, np.ndarray]:
    """The pictures of batch element ``b`` of an evaluated batch (``predictions`` =
    ``model.volume(batch)``): name -> [H, W, 3] uint8. ``depth`` and ``semantics`` per camera
    rendered every ``eval_config.image_stride`` pixels; ``bev`` and ``perspective`` views of
    the predicted occupancy next to the ground truth when the batch has Occ3D labels."""
    classes = config.data.classes
    meta = batch["meta"][b]
    info = sample_info(dataset, meta)
    maps = sample_camera_maps(
        model,
        predictions,
        b,
        info,
        list(config.data.cameras),
        np.asarray(meta["bev_aug"], dtype=np.float64),
        eval_config.image_stride,
        dataset.dataroot,
        lidar,
        classes.ignore_index,
        ground_truth_folder(dataset.dataroot, eval_config.ground_truth_dir),
    )
    cameras, images = [m.camera for m in maps], [m.image for m in maps]
    pictures = {
        "depth": rig_depth_figure(
            cameras,
            images,
            [m.lidar_depth for m in maps],
            [m.rendered.depth for m in maps],
            *depth_range,
            columns,
        ),
        "semantics": rig_semantic_figure(
            cameras,
            images,
            [m.target_semantics for m in maps],
            [m.rendered.seen_semantics(classes.free_index) for m in maps],
            classes.occ_class_names,
            classes.ignore_index,
            columns,
        ),
    }
    if "voxel_semantics" not in batch:
        return pictures
    predicted = predict_occupancy(
        predictions["occupancy_density"][b : b + 1],
        predictions["logits"][b : b + 1],
        eval_config.density_threshold,
        classes.free_index,
    )[0]
    fields = {name: batch[name][b] for name in ("mask_camera", "mask_lidar")}
    mask = occ3d_eval_mask(fields, eval_config.mask, f"{dataset.source}: sample {meta['token']}")
    pictures["bev"], pictures["perspective"] = occupancy_figures(
        predicted.cpu().numpy(),
        batch["voxel_semantics"][b].cpu().numpy(),
        classes.occ_class_names,
        config.data.grid,
        None if mask is None else mask.cpu().numpy(),
        f"mask_{eval_config.mask}",
        classes.ignore_index,
    )
    return pictures
