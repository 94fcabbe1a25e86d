"""``RenderLSSOccMetric``: Occ3D mIoU and RayIoU (renderlss.eval) as an mmengine metric."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric

from renderlss.eval.metrics import OccupancyIoU, occ3d_eval_mask
from renderlss.eval.ray_iou import RayIoU
from renderlss.mmdet3d.experiment import experiment_config


@METRICS.register_module()
class RenderLSSOccMetric(BaseMetric):
    """Occ3D voxel IoU and RayIoU of ``pred_occupancy`` against ``voxel_semantics``.

    Each data sample (as ``RenderLSSOccupancy`` predicts it) needs ``pred_occupancy`` and
    ``voxel_semantics`` [X, Y, Z] (free = K), the ``mask_<eval.mask>`` field and
    ``lidar_origin`` [T, 3] (RayIoU's query origins). Per sample, the counts of renderlss's
    :class:`OccupancyIoU` and :class:`RayIoU` are kept, so that mmengine gathers them over
    processes; the result is theirs (``mIoU_<K>_classes``, ``IoU/<class>``, ``RayIoU``,
    ``RayIoU@<tau>``, ...).

    Args:
        experiment, overrides: the renderlss config: ``data.classes``, ``data.grid`` and
            ``eval`` (``mask``, ``subset_exclude``, ``ray_iou``).
    """

    default_prefix = "renderlss"

    def __init__(
        self,
        experiment: str | dict | None = None,
        overrides: list[str] | tuple[str, ...] = (),
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.config = experiment_config(experiment, overrides)
        self.voxels = self._occupancy_iou()
        self.rays = self._ray_iou()

    def _occupancy_iou(self) -> OccupancyIoU:
        classes = self.config.data.classes
        return OccupancyIoU(classes.occ_class_names, classes.ignore_index)

    def _ray_iou(self) -> RayIoU:
        classes = self.config.data.classes
        return RayIoU(classes.occ_class_names, self.config.data.grid, self.config.eval.ray_iou)

    def process(self, data_batch: object, data_samples: Sequence[dict]) -> None:
        """Count each sample's voxels and query rays."""
        for sample in data_samples:
            where = f"sample {sample.get('token', '?')}"
            pred, target = sample["pred_occupancy"].cpu(), sample["voxel_semantics"].cpu()
            mask = occ3d_eval_mask(sample, self.config.eval.mask, where)
            self.voxels.reset()
            self.rays.reset()
            self.voxels.update(pred, target, None if mask is None else mask.cpu(), where)
            self.rays.update(pred, target, torch.as_tensor(sample["lidar_origin"]), where)
            self.results.append((self.voxels.state(), self.rays.state()))

    def compute_metrics(self, results: list) -> dict[str, float]:
        voxels, rays = self._occupancy_iou(), self._ray_iou()
        for voxel_state, ray_state in results:
            voxels.merge_state(voxel_state)
            rays.merge_state(ray_state)
        return {
            **voxels.compute(self.config.eval.subset_exclude).as_dict(),
            **rays.compute().as_dict(),
        }
