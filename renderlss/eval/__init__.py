"""Evaluation metrics: Occ3D voxel mIoU, RayIoU and depth metrics, as accumulators whose
state is one tensor of sums (mergeable across processes with ``all_reduce``)."""

from renderlss.eval.depth_metrics import DepthMetrics, DepthMetricsResult
from renderlss.eval.metrics import (
    OccupancyIoU,
    OccupancyIoUResult,
    SumAccumulator,
    confusion_matrix,
    format_class_table,
    iou_from_confusion,
    occ3d_eval_mask,
)
from renderlss.eval.ray_iou import (
    RayIoU,
    RayIoUConfig,
    RayIoUResult,
    cast_query_rays,
    first_occupied_voxel,
    lidar_like_directions,
    select_query_origins,
    sensor_origins_in_frame,
)

__all__ = [
    "DepthMetrics",
    "DepthMetricsResult",
    "OccupancyIoU",
    "OccupancyIoUResult",
    "RayIoU",
    "RayIoUConfig",
    "RayIoUResult",
    "SumAccumulator",
    "cast_query_rays",
    "confusion_matrix",
    "first_occupied_voxel",
    "format_class_table",
    "iou_from_confusion",
    "lidar_like_directions",
    "occ3d_eval_mask",
    "select_query_origins",
    "sensor_origins_in_frame",
]
