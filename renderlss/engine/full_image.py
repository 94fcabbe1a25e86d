"""Whole camera images rendered from a predicted volume, one ray every ``stride`` pixels.

The image is cut into ``stride x stride`` blocks (a partial block at the right or bottom
edge is dropped); block ``(a, b)`` is represented by its pixel ``(a * stride + stride // 2,
b * stride + stride // 2)`` and its ray goes through that pixel's centre in *original* image
coordinates. So a rendered block and the synthetic oracle's pixel are the same ray, and the
oracle can be compared without any interpolation. Sparse targets (LiDAR points) fall into
the block that holds their pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from renderlss.data.render_targets import inside_grid, rays_from_uv
from renderlss.geometry import nearest_per_pixel
from renderlss.geometry.grid import VoxelGrid
from renderlss.ops.render import RenderOutput
from renderlss.records.files import output_path, read_rgb_image
from renderlss.records.infos import camera_to_key_ego
from renderlss.records.oracle import ORACLE_SKY, load_ground_truth
from renderlss.targets.pixel_targets import PixelTargets
from renderlss.targets.sources import TargetSource

# A rendered pixel whose ray collected less weight than this saw nothing: its logits are a
# near-zero sum whose argmax means nothing, so pictures show it as free.
SEEN_OPACITY = 0.5


@dataclass(frozen=True)
class StridedGrid:
    """The blocks of an image of ``height x width`` pixels at ``stride``."""

    height: int
    width: int
    stride: int

    def __post_init__(self) -> None:
        if self.stride < 1 or self.height < self.stride or self.width < self.stride:
            raise ValueError(
                f"StridedGrid: stride {self.stride} does not fit a {self.width}x{self.height} image"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) number of whole blocks."""
        return self.height // self.stride, self.width // self.stride

    def pixel_rows(self) -> np.ndarray:
        """[h] row index of each block's representative pixel."""
        return np.arange(self.shape[0]) * self.stride + self.stride // 2

    def pixel_cols(self) -> np.ndarray:
        """[w] column index of each block's representative pixel."""
        return np.arange(self.shape[1]) * self.stride + self.stride // 2

    def pixel_centres(self) -> np.ndarray:
        """[h * w, 2] (u, v) centres of the representative pixels, row-major."""
        v, u = np.meshgrid(self.pixel_rows() + 0.5, self.pixel_cols() + 0.5, indexing="ij")
        return np.stack([u.ravel(), v.ravel()], axis=-1)

    def subsample(self, image: np.ndarray) -> np.ndarray:
        """[H, W, ...] full-resolution map -> [h, w, ...] at the representative pixels."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"subsample: map is {image.shape[1]}x{image.shape[0]}, the image "
                f"{self.width}x{self.height}"
            )
        return image[self.pixel_rows()][:, self.pixel_cols()]

    def downscale(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] picture -> [h, w, 3], each block averaged (partial blocks dropped)."""
        height, width = self.shape
        whole = image[: height * self.stride, : width * self.stride]
        return cv2.resize(whole, (width, height), interpolation=cv2.INTER_AREA)


def camera_grid(cam_info: dict, stride: int) -> StridedGrid:
    """The strided grid of one camera of an info record (``width``/``height`` fields)."""
    return StridedGrid(int(cam_info["height"]), int(cam_info["width"]), stride)


def camera_rays(
    uv: np.ndarray, cam_info: dict, key_info: dict, bev_aug: np.ndarray
) -> dict[str, torch.Tensor]:
    """Rays through original image coordinates of one camera, in the (augmented) key-ego
    frame of ``key_info``.

    Args:
        uv: [M, 2] image coordinates; bev_aug: [4, 4] BEV augmentation of the sample.
    Returns:
        origins [M, 3], dirs [M, 3], z_per_t [M], float32 tensors.
    """
    cam2key = bev_aug @ camera_to_key_ego(cam_info, key_info)
    intrinsic = np.asarray(cam_info["cam_intrinsic"], dtype=np.float64)
    origins, dirs, z_per_t = rays_from_uv(uv, intrinsic, cam2key)
    return dict(
        origins=torch.from_numpy(np.ascontiguousarray(origins)),
        dirs=torch.from_numpy(dirs),
        z_per_t=torch.from_numpy(z_per_t),
    )


def reachable(rays: dict[str, torch.Tensor], depth: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """[M] bool: a target at camera-z ``depth`` > 0 whose surface point lies inside the grid.

    Rendered depth is not divided by opacity, so a surface outside the grid renders as 0 m
    and would be an error the volume cannot avoid; such targets are not scored.
    """
    candidates = {name: value.numpy() for name, value in rays.items()}
    candidates["depth"] = np.asarray(depth, dtype=np.float32)
    return inside_grid(candidates, grid) & (candidates["depth"] > 0)


def render_sample_rays(
    model: nn.Module,
    predictions: dict[str, torch.Tensor],
    index: int,
    rays: dict[str, torch.Tensor],
) -> RenderOutput:
    """Render the volume of batch element ``index`` along rays [R, ...] (any device).

    Args:
        model: provides ``render(predictions, rays)`` (an ``OccupancyNet``).
        predictions: ``density`` [B, 1, X, Y, Z] and ``logits`` [B, K, X, Y, Z] (and the
            field decoder's ``features`` [B, C, X, Y, Z]).
    Returns:
        RenderOutput with a batch of one: depth [1, R], semantics [1, R, K].
    """
    device = predictions["density"].device
    one = {
        name: predictions[name][index : index + 1]
        for name in ("density", "logits", "features")
        if name in predictions
    }
    batch_rays = {name: value.to(device)[None] for name, value in rays.items()}
    return model.render(one, batch_rays)


@dataclass
class RenderedImage:
    """One camera rendered at a stride: ``[h, w]`` maps of its ``StridedGrid``."""

    depth: np.ndarray  # float32 camera z, metres (not divided by opacity)
    semantics: np.ndarray  # int64 argmax of the rendered logits
    opacity: np.ndarray  # float32 sum of weights

    def seen_semantics(self, free_index: int) -> np.ndarray:
        """[h, w] rendered classes where the ray met the volume (``SEEN_OPACITY``), free
        elsewhere."""
        return np.where(self.opacity >= SEEN_OPACITY, self.semantics, free_index)


def render_camera_images(
    model: nn.Module,
    predictions: dict[str, torch.Tensor],
    index: int,
    key_info: dict,
    cameras: list[str],
    bev_aug: np.ndarray,
    stride: int,
) -> list[RenderedImage]:
    """Every camera of a sample rendered at ``stride``, in one call of the renderer.

    Args:
        predictions: the model's volumes; ``index`` selects the sample in the batch.
        key_info: the sample's info record (camera poses, intrinsics, image sizes).
        bev_aug: [4, 4] BEV augmentation of the sample.
    """
    grids = [camera_grid(key_info["cams"][cam], stride) for cam in cameras]
    parts = [
        camera_rays(grid.pixel_centres(), key_info["cams"][cam], key_info, bev_aug)
        for cam, grid in zip(cameras, grids)
    ]
    rays = {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
    rendered = render_sample_rays(model, predictions, index, rays)
    depth = rendered.depth[0].float().cpu().numpy()
    opacity = rendered.opacity[0].float().cpu().numpy()
    semantics = rendered.semantics[0].argmax(dim=-1).cpu().numpy()
    images, start = [], 0
    for grid in grids:
        shape = grid.shape
        stop = start + shape[0] * shape[1]
        images.append(
            RenderedImage(
                depth[start:stop].reshape(shape),
                semantics[start:stop].reshape(shape),
                opacity[start:stop].reshape(shape),
            )
        )
        start = stop
    return images


def rasterise_targets(
    targets: PixelTargets, grid: StridedGrid, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse targets drawn into the blocks of a strided grid, the nearest per block.

    Args:
        targets: in original image coordinates; points without depth are skipped.
    Returns:
        depth [h, w] float32 (0 = no target) and semantics [h, w] int64 (``ignore_index`` =
        no target).
    """
    height, width = grid.shape
    depth = np.zeros((height, width), dtype=np.float32)
    semantics = np.full((height, width), ignore_index, dtype=np.int64)
    kept = targets.select(targets.depth > 0)
    block_uv = np.floor(kept.uv) // grid.stride
    nearest = nearest_per_pixel(block_uv, kept.depth, width, height)
    rows, cols = block_uv[nearest, 1].astype(np.int64), block_uv[nearest, 0].astype(np.int64)
    depth[rows, cols] = kept.depth[nearest]
    semantics[rows, cols] = kept.semantics[nearest]
    return depth, semantics


@dataclass
class CameraMaps:
    """Everything drawn for one camera of a sample, as ``[h, w]`` maps of its strided grid."""

    camera: str
    image: np.ndarray  # [h, w, 3] uint8 RGB, blocks averaged
    rendered: RenderedImage
    lidar_depth: np.ndarray  # float32, 0 = no LiDAR point in the block
    lidar_semantics: np.ndarray  # int64, ignore index = no labelled point
    # Per-pixel ground truth (the synthetic oracle or eval.ground_truth_dir), when there is one.
    truth_depth: np.ndarray | None  # float32, 0 = sky or unknown
    truth_semantics: np.ndarray | None  # int64, ignore index = sky

    @property
    def target_semantics(self) -> np.ndarray:
        """The dense ground-truth classes when there are some, else the LiDAR-projected ones."""
        return self.lidar_semantics if self.truth_semantics is None else self.truth_semantics


def sample_camera_maps(
    model: nn.Module,
    predictions: dict[str, torch.Tensor],
    index: int,
    info: dict,
    cameras: list[str],
    bev_aug: np.ndarray,
    stride: int,
    dataroot: str | Path,
    lidar: TargetSource,
    ignore_index: int,
    truth_dir: Path | None,
) -> list[CameraMaps]:
    """Rendered images, camera images, LiDAR targets and (when given) the per-pixel ground
    truth of every camera of one sample, all on the cameras' strided grids.

    Args:
        predictions: the model's volumes; ``index`` selects the sample in the batch.
        info: the sample's info record; bev_aug: [4, 4] its BEV augmentation.
        lidar: the keyframe LiDAR target source.
        truth_dir: folder of ``<CAM>/<image stem>.npz`` ground-truth maps
            (``renderlss.records.oracle.ground_truth_folder``), or None.
    """
    rendered = render_camera_images(model, predictions, index, info, cameras, bev_aug, stride)
    targets = lidar(info, cameras)
    out = []
    for cam, image in zip(cameras, rendered):
        cam_info = info["cams"][cam]
        grid = camera_grid(cam_info, stride)
        path = Path(dataroot) / cam_info["data_path"]
        where = f"sample {info['token']}"
        picture = read_rgb_image(path, where)
        lidar_depth, lidar_semantics = rasterise_targets(targets[cam], grid, ignore_index)
        truth_depth = truth_semantics = None
        if truth_dir is not None:
            depth, semantics = load_ground_truth(
                output_path(truth_dir, cam, cam_info["data_path"]), where, picture.shape[:2]
            )
            truth_depth = grid.subsample(depth)
            if semantics is not None:
                classes = grid.subsample(semantics).astype(np.int64)
                truth_semantics = np.where(classes == ORACLE_SKY, ignore_index, classes)
        out.append(
            CameraMaps(
                cam,
                grid.downscale(picture),
                image,
                lidar_depth,
                lidar_semantics,
                truth_depth,
                truth_semantics,
            )
        )
    return out
