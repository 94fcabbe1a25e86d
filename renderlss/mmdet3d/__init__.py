"""renderlss inside mmdet3d / mmengine pipelines (docs/mmdet3d.md).

``custom_imports = dict(imports=["renderlss.mmdet3d"], allow_failed_imports=False)`` in an
mmengine config registers, in mmdet3d's registries (``mmdet3d.registry``):

- MODELS: ``RenderLSSRenderHead`` (a density / logits volume rendered along a sample's rays
  into the renderlss loss terms) and ``RenderLSSOccupancy`` (the whole renderlss network and
  objective as an mmengine ``BaseModel``);
- DATASETS: ``RenderLSSOccDataset`` (renderlss info files, or mmdet3d>=1.1 ``{metainfo,
  data_list}`` files converted by :mod:`renderlss.mmdet3d.mmdet3d_infos`);
- TRANSFORMS: ``AttachRenderTargets`` (LiDAR / dense depth / 2D label ray targets) and
  ``PackRenderLSSInputs``;
- METRICS: ``RenderLSSOccMetric`` (Occ3D mIoU and RayIoU).

Every component wraps renderlss's own functions; the light install (mmcv-lite, no compiled
ops) is enough for all of them (:mod:`renderlss.mmdet3d.light_stack`).
"""

from renderlss.mmdet3d import dataset, metric, occupancy_model, render_head, transforms
from renderlss.mmdet3d.light_stack import settle_registries_without_ops

settle_registries_without_ops()

__all__ = ["dataset", "metric", "occupancy_model", "render_head", "transforms"]
