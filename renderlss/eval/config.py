"""Schema of the ``eval = dict(...)`` section of an experiment config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from renderlss.eval.ray_iou import RayIoUConfig


@dataclass
class EvalConfig:
    """How a trained network is evaluated (``renderlss.engine.evaluation``, ``docs/evaluation.md``).

    ``occupancy_threshold`` is the density sigma (per metre) above which a voxel counts as
    occupied. 0.5/m means an opacity of 1 - exp(-0.5 * 0.4) = 0.18 across one 0.4 m voxel: a
    voxel is kept once it stops a noticeable share of the rays that cross it. RenderOcc tuned
    its threshold (8.5) on the validation split; here it is tuned on a training split with
    ``tools/pick_threshold.py`` and written into the config, never chosen on the split that is
    reported.
    """

    occupancy_threshold: float = 0.5
    # "density": occupied where sigma > occupancy_threshold, class = best non-free logit;
    # "logits": class = best logit including free (for networks trained with the 3D loss).
    occupancy_rule: Literal["density", "logits"] = "density"
    # Occ3D visibility mask of the voxels scored by mIoU: "camera" is the benchmark's setting.
    mask: Literal["camera", "lidar", "none"] = "camera"
    # Classes left out of the second mIoU (the 15-class mean many papers quote).
    subset_exclude: list[str] = field(default_factory=lambda: ["others", "other_flat"])
    ray_iou: RayIoUConfig = field(default_factory=RayIoUConfig)
    # Depth metrics count targets with min_depth < depth < max_depth (camera z, metres) and
    # clamp rendered depth into that range, the usual 0.1-80 m nuScenes protocol.
    min_depth: float = 0.1
    max_depth: float = 80.0
    # Render depth against every LiDAR point of the keyframe that projects into a camera.
    lidar_depth: bool = True
    # Render whole camera images every image_stride pixels and compare them with per-pixel
    # ground-truth depth (``depth/oracle/...``): the maps of ground_truth_dir when set, else
    # the exact oracle when ``<dataroot>/oracle/`` exists (synthetic data).
    oracle: bool = True
    # A folder of the user's own per-image maps, ``<dir>/<CAM>/<image stem>.npz`` with
    # ``depth`` (float, camera z in metres, 0 = unknown) and optional ``semantics`` (uint8,
    # the config's class indices); docs/formats.md. "" = the synthetic oracle, if any.
    ground_truth_dir: str = ""
    image_stride: int = 4
    # Lifting quality (``depth/lifting/...``, with the LiDAR depth): the depth net's expected
    # depth per feature cell against the cell's LiDAR depth, overall and on cells near a depth
    # edge (``depth/lifting_edge/...``): cells whose LiDAR depths within lifting_edge_radius
    # cells span (max - min) / min > lifting_edge_threshold. Fixed here, not read from the
    # loss's edge options, so that runs with other loss options stay comparable.
    lifting_edge_threshold: float = 0.5
    lifting_edge_radius: int = 1
    # The images-blind depth prior scored with the baselines: per camera, the image height cut
    # into this many row bands, each predicting the median LiDAR target depth of the band
    # over up to depth_prior_samples training keyframes.
    depth_prior_bands: int = 32
    depth_prior_samples: int = 200
    batch_size: int = 1

    def validate(self, where: str) -> None:
        if not 0.0 < self.min_depth < self.max_depth:
            raise ValueError(
                f"{where}: need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}"
            )
        if self.image_stride < 1:
            raise ValueError(f"{where}.image_stride: must be >= 1, got {self.image_stride}")
        if self.depth_prior_bands < 1 or self.depth_prior_samples < 1:
            raise ValueError(f"{where}: depth_prior_bands and depth_prior_samples must be >= 1")
        if self.lifting_edge_threshold <= 0 or self.lifting_edge_radius < 0:
            raise ValueError(
                f"{where}: need lifting_edge_threshold > 0 and lifting_edge_radius >= 0, got "
                f"{self.lifting_edge_threshold}, {self.lifting_edge_radius}"
            )
        if self.batch_size < 1:
            raise ValueError(f"{where}.batch_size: must be >= 1, got {self.batch_size}")
        if self.occupancy_threshold < 0:
            raise ValueError(
                f"{where}.occupancy_threshold: density is >= 0, got {self.occupancy_threshold}"
            )
        if len(set(self.subset_exclude)) != len(self.subset_exclude):
            raise ValueError(f"{where}.subset_exclude: repeated names in {self.subset_exclude}")
        self.ray_iou.validate(f"{where}.ray_iou")

    @property
    def density_threshold(self) -> float | None:
        """The threshold ``predict_occupancy`` takes: None under the "logits" rule."""
        return self.occupancy_threshold if self.occupancy_rule == "density" else None
