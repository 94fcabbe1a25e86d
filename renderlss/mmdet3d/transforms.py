"""Pipeline transforms: renderlss ray targets attached to a sample dict, and the sample packed
into mmengine's ``inputs`` / ``data_samples``.

A sample dict (``results``) here carries the renderlss info record of its keyframe under
``info`` (``RenderLSSOccDataset`` puts it there, with ``info_lookup`` for neighbouring
keyframes and the sample's tensors of :class:`renderlss.data.dataset.OccDataset`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmengine.structures import BaseDataElement

from renderlss.data.render_targets import (
    build_query_rays,
    build_ray_targets,
    candidate_pixels,
    collect_frame_targets,
    input_depth_image,
    make_target_sources,
    ray_tensors,
)
from renderlss.data.unlabeled import is_labeled
from renderlss.engine.evaluation import lidar_origin
from renderlss.mmdet3d.experiment import experiment_config
from renderlss.mmdet3d.occupancy_model import VOXEL_FIELDS
from renderlss.targets.sources import TargetSource

# The model inputs of a sample (see renderlss_batch).
INPUT_FIELDS = ("img", "intrinsic", "img_aug", "cam2ego")


def no_neighbours(token: str) -> dict | None:
    """The lookup of a sample dict without ``info_lookup``: no keyframe has neighbours."""
    return None


@TRANSFORMS.register_module()
class AttachRenderTargets(BaseTransform):
    """Adds ``targets``: the renderlss training rays of the keyframe.

    Rays come from ``data.targets.sources`` (``lidar``, ``dense_depth``, ``sam_labels``,
    ``oracle``) of the keyframe and its +-``adjacent_keyframes`` neighbours (through
    ``results["info_lookup"]``), drawn as renderlss's own dataset draws them
    (:func:`renderlss.data.render_targets.build_ray_targets`) with numpy's global random
    state (which mmengine seeds per worker).

    Reads ``info`` (renderlss info record), ``dataroot``, ``bev_aug`` [4, 4] and
    ``img_aug`` [N, 3, 3] (identity when absent). Adds ``targets``: ``origins`` /
    ``dirs`` [R, 3], ``z_per_t``, ``depth``, ``semantics``, ``confidence``, ``adjacent`` [R]
    in the augmented key-ego frame and ``image_depth`` [N, H, W] (target depth in each
    input image); with ``data.targets.query_rays``, also ``query_targets``, the rays of the
    ray-query losses alone.

    Args:
        experiment, overrides: the renderlss config whose ``data`` section is read.
    """

    def __init__(
        self, experiment: str | dict | None = None, overrides: list[str] | tuple[str, ...] = ()
    ) -> None:
        self.data = experiment_config(experiment, overrides).data
        self._sources: dict[str, list[TargetSource]] = {}

    def sources(self, dataroot: str) -> list[TargetSource]:
        """The configured target sources reading from ``dataroot`` (made once per root)."""
        if dataroot not in self._sources:
            self._sources[dataroot] = make_target_sources(
                self.data.targets, Path(dataroot), self.data.classes
            )
        return self._sources[dataroot]

    def transform(self, results: dict) -> dict:
        info = results["info"]
        data = self.data
        if not is_labeled(info):
            raise ValueError(
                f"sample {info['token']}: field 'labeled' is False; AttachRenderTargets "
                "takes labeled keyframes (renderlss's own dataset handles unlabeled ones)"
            )
        cameras = list(data.cameras)
        identity = np.eye(3, dtype=np.float64)[None].repeat(len(cameras), 0)
        img_aug = np.asarray(results.get("img_aug", identity), dtype=np.float64)
        bev_aug = np.asarray(results.get("bev_aug", np.eye(4)), dtype=np.float64)
        lookup: Callable[[str], dict | None] = results.get("info_lookup", no_neighbours)
        frames = collect_frame_targets(
            info,
            lookup,
            self.sources(results["dataroot"]),
            cameras,
            data.targets.adjacent_keyframes,
        )
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        key_info, candidates = frames[0][0], candidate_pixels(frames)
        rays = build_ray_targets(
            key_info, candidates, data.targets, data.classes, data.grid, bev_aug, rng
        )
        current = frames[0][2]
        rays["image_depth"] = np.stack(
            [
                input_depth_image(current[cam], aug, data.input_size)
                for cam, aug in zip(cameras, img_aug)
            ]
        )
        results["targets"] = ray_tensors(rays)
        if data.targets.query_rays:
            query = build_query_rays(key_info, candidates, data.targets, data.classes, bev_aug, rng)
            results["query_targets"] = ray_tensors(query)
        return results


@TRANSFORMS.register_module()
class PackRenderLSSInputs(BaseTransform):
    """``{"inputs": {img, intrinsic, img_aug, cam2ego}, "data_samples": element}`` where the
    element holds ``targets`` (when attached) and the Occ3D fields, and as metainfo the
    ``token``, ``sample_idx`` and ``lidar_origin`` [1, 3] (the keyframe LiDAR in the
    augmented key-ego frame: RayIoU's query origin)."""

    def transform(self, results: dict) -> dict:
        info = results["info"]
        where = f"sample {info['token']}"
        missing = [name for name in INPUT_FIELDS if name not in results]
        if missing:
            raise ValueError(f"{where}: fields {missing} missing from the sample dict")
        bev_aug = np.asarray(results.get("bev_aug", np.eye(4)), dtype=np.float64)
        element = BaseDataElement(
            metainfo=dict(
                token=info["token"],
                sample_idx=results.get("sample_idx", -1),
                lidar_origin=lidar_origin(info, bev_aug, where),
            )
        )
        for rays in ("targets", "query_targets"):
            if results.get(rays):
                element.set_field(BaseDataElement(**results[rays]), rays)
        for name in VOXEL_FIELDS:
            if name in results:
                element.set_field(results[name], name)
        return dict(inputs={name: results[name] for name in INPUT_FIELDS}, data_samples=element)
