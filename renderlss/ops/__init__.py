"""Core ops as pure functions over tensors: lift (frustum points), splat (voxel pooling),
camera rays and volume rendering. Naive baselines and test oracles live in
``renderlss.ops.reference``.

Shapes: B samples, N cameras, D depth bins, (h, w) feature map, C channels, (X, Y, Z) voxels,
R rays per sample, S samples per ray, K classes.

    frustum_points   depths [D] + cameras [B, N, ...]        -> points [B, N, D, h, w, 3]
                     (or per-cell depths [B, N, D, h, w], optional pixel offsets)
    splat            features [B, N, D, h, w, C] + points    -> volume [B, C, X, Y, Z]
    splat_depth_context  depth [B, N, D, h, w] + context [B, N, C, h, w] + points -> volume
    pixel_rays / image_rays  image coordinates + cameras     -> Rays (origins, directions, z_per_t)
    render_rays      density [B, 1, X, Y, Z], logits [B, K, X, Y, Z], Rays [B, R] -> RenderOutput
"""

from renderlss.ops.config import RenderConfig
from renderlss.ops.frustum import frustum_points
from renderlss.ops.rays import Rays, cell_centers, image_rays, pixel_rays
from renderlss.ops.render import (
    RenderOutput,
    ray_box_intersection,
    render_rays,
    sample_volume,
    volume_weights,
)
from renderlss.ops.splat import (
    SplatPlan,
    plan_splat,
    splat,
    splat_depth_context,
    splat_planned,
    voxel_index,
)

__all__ = [
    "Rays",
    "RenderConfig",
    "RenderOutput",
    "SplatPlan",
    "cell_centers",
    "frustum_points",
    "image_rays",
    "pixel_rays",
    "plan_splat",
    "ray_box_intersection",
    "render_rays",
    "sample_volume",
    "splat",
    "splat_depth_context",
    "splat_planned",
    "volume_weights",
    "voxel_index",
]
