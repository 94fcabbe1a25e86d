"""Render targets of a sample: rays in the key-ego frame with depth and class targets.

Target pixels come from the configured sources for the current keyframe and, optionally, for
its +-k neighbouring keyframes; each pixel stands for a ray from its camera (at that camera's
own timestamp and ego pose) expressed in the current key-ego frame with the BEV augmentation
applied. A fixed number of rays is drawn by weighted ray sampling among the pixels whose
target lies inside the grid; ray geometry is computed only for the pixels drawn, so dense
targets (every pixel of every image) cost little more than sparse ones. Class-balance weights
count the classes of all candidate pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from renderlss.data.classes import ClassesConfig, learning_map_table
from renderlss.data.config import TargetConfig
from renderlss.data.ray_sampling import (
    class_balance_weights,
    draw_reachable_rays,
    ray_weights,
    unlabelled_quota,
)
from renderlss.geometry import nearest_depth_image, unproject_pixels
from renderlss.geometry.grid import VoxelGrid
from renderlss.records.infos import camera_to_key_ego, info_intrinsic
from renderlss.records.oracle import ORACLE_DIR
from renderlss.targets.dense_depth_files import DenseDepthTargetSource
from renderlss.targets.lidar import HiddenPointTest
from renderlss.targets.oracle import OracleTargetSource
from renderlss.targets.pixel_targets import PixelTargets
from renderlss.targets.semantic_label_files import SemanticLabelSource
from renderlss.targets.sources import LidarTargetSource, TargetSource


class WeightedSource:
    """A target source whose targets' confidence is multiplied by a per-source weight."""

    def __init__(self, source: TargetSource, weight: float) -> None:
        self.source = source
        self.weight = weight

    def __call__(self, info: dict, cameras: list[str]) -> dict[str, PixelTargets]:
        targets = self.source(info, cameras)
        for tgt in targets.values():
            tgt.confidence = tgt.confidence * np.float32(self.weight)
        return targets


def hidden_point_test(config: TargetConfig) -> HiddenPointTest | None:
    """The LiDAR source's hidden-point test of ``config`` (None when its radius is 0)."""
    if config.lidar_hidden_radius == 0:
        return None
    return HiddenPointTest(
        config.lidar_hidden_radius, config.lidar_hidden_margin, config.lidar_hidden_min_sectors
    )


def make_target_sources(
    config: TargetConfig, dataroot: str | Path, classes: ClassesConfig
) -> list[TargetSource]:
    """Instantiate the configured target sources (weighted as ``source_weights`` says)."""
    builders = {
        "lidar": lambda: LidarTargetSource(
            dataroot,
            learning_map_table(classes),
            classes.ignore_index,
            config.ego_box,
            config.min_depth,
            hidden_point_test(config),
        ),
        "dense_depth": lambda: DenseDepthTargetSource(config.dense_depth_dir, classes.ignore_index),
        "sam_labels": lambda: SemanticLabelSource(
            config.sam_labels_dir, classes.ignore_index, config.sam_labels_stride
        ),
        "oracle": lambda: OracleTargetSource(
            config.oracle_dir or Path(dataroot) / ORACLE_DIR, config.oracle_stride
        ),
    }
    sources = []
    for name in config.sources:
        source = builders[name]()
        weight = config.source_weights.get(name, 1.0)
        sources.append(source if weight == 1.0 else WeightedSource(source, weight))
    return sources


def rays_from_uv(
    uv: np.ndarray, intrinsic: np.ndarray, cam2key: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays through image coordinates.

    Args:
        uv: [M, 2] original image coordinates; intrinsic: [3, 3]; cam2key: [4, 4].
    Returns:
        origins [M, 3], unit directions [M, 3] in the key frame, and z_per_t [M], the camera z
        gained per metre along the ray (rendered camera-z depth = t * z_per_t).
    """
    rays_cam = unproject_pixels(uv, np.ones(len(uv)), intrinsic)  # camera z = 1
    norm = np.linalg.norm(rays_cam, axis=1)
    dirs = (rays_cam / norm[:, None]) @ cam2key[:3, :3].T
    origins = np.broadcast_to(cam2key[:3, 3], dirs.shape)
    return origins.astype(np.float32), dirs.astype(np.float32), (1.0 / norm).astype(np.float32)


def neighbour_infos(info: dict, lookup: Callable[[str], dict | None], k: int) -> list[dict]:
    """Up to k keyframes before and k after ``info`` in its scene, following prev/next
    tokens through ``lookup`` (token -> info, or None when the split does not hold it)."""
    found = []
    for link in ("prev", "next"):
        current = info
        for _ in range(k):
            token = current.get(link, "")
            current = lookup(token) if token else None
            if current is None:
                break
            found.append(current)
    return found


def candidate_pixels(
    frames: list[tuple[dict, bool, dict[str, PixelTargets]]],
) -> tuple[dict[str, np.ndarray], list[tuple[dict, str]]]:
    """Every target pixel of every frame and camera in one table, without ray geometry.

    Returns:
        pixels: uv [M, 2], depth [M], semantics [M], confidence [M], adjacent [M] bool and
            view [M] int64, the pixel's index into ``views``;
        views: (frame info, camera name) per view.
    Raises:
        ValueError: no frame has a target pixel in any camera.
    """
    views, parts = [], []
    for frame_info, adjacent, targets in frames:
        for cam, tgt in targets.items():
            if not len(tgt):
                continue
            parts.append(
                dict(
                    uv=tgt.uv,
                    depth=tgt.depth,
                    semantics=tgt.semantics,
                    confidence=tgt.confidence,
                    adjacent=np.full(len(tgt), adjacent),
                    view=np.full(len(tgt), len(views), dtype=np.int64),
                )
            )
            views.append((frame_info, cam))
    if not parts:
        raise ValueError(f"sample {frames[0][0]['token']}: no render targets in any camera")
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}, views


def pixel_ray_geometry(
    pixels: dict[str, np.ndarray],
    index: np.ndarray,
    views: list[tuple[dict, str]],
    key_info: dict,
    bev_aug: np.ndarray,
) -> dict[str, np.ndarray]:
    """Rays of the pixels ``index`` [K], each from its camera at that camera's own timestamp
    and ego pose, in the (augmented) key-ego frame.

    Returns:
        origins [K, 3], dirs [K, 3], z_per_t [K] (see :func:`rays_from_uv`) and depth [K].
    """
    origins = np.empty((len(index), 3), dtype=np.float32)
    dirs = np.empty((len(index), 3), dtype=np.float32)
    z_per_t = np.empty(len(index), dtype=np.float32)
    view_of = pixels["view"][index]
    for view in np.unique(view_of):
        rows = np.flatnonzero(view_of == view)
        frame_info, cam = views[view]
        cam_info = frame_info["cams"][cam]
        cam2key = bev_aug @ camera_to_key_ego(cam_info, key_info)
        # An adjacent keyframe's camera is not checked by the Dataset (only the key's are).
        where = f"sample {frame_info.get('token', '?')}, camera {cam}"
        intrinsic = info_intrinsic(cam_info, where)
        origins[rows], dirs[rows], z_per_t[rows] = rays_from_uv(
            pixels["uv"][index[rows]], intrinsic, cam2key
        )
    return dict(origins=origins, dirs=dirs, z_per_t=z_per_t, depth=pixels["depth"][index])


def inside_grid(rays: dict[str, np.ndarray], grid: VoxelGrid) -> np.ndarray:
    """[M] bool: the ray's target surface point (depth > 0) lies inside the grid, so the
    renderer can reach it. Rays without depth are kept."""
    t = rays["depth"] / rays["z_per_t"]
    points = rays["origins"] + rays["dirs"] * t[:, None]
    _, valid = grid.point_to_index(points)
    return valid | (rays["depth"] <= 0)


def collect_frame_targets(
    info: dict,
    lookup: Callable[[str], dict | None],
    sources: list[TargetSource],
    cameras: list[str],
    adjacent_keyframes: int,
) -> list[tuple[dict, bool, dict[str, PixelTargets]]]:
    """Pixel targets of every source for the keyframe and its +-k neighbours.

    Returns:
        (frame info, is_adjacent, {camera: targets of all sources concatenated}) per frame,
        the current keyframe first.
    """
    frames = [(info, False)] + [
        (nb, True) for nb in neighbour_infos(info, lookup, adjacent_keyframes)
    ]
    collected = []
    for frame_info, adjacent in frames:
        per_source = [source(frame_info, cameras) for source in sources]
        merged = {cam: PixelTargets.concatenate([t[cam] for t in per_source]) for cam in cameras}
        collected.append((frame_info, adjacent, merged))
    return collected


def dynamic_class_mask(classes: ClassesConfig) -> np.ndarray:
    """[K + 1] bool over the Occ3D classes and free: the classes that move."""
    dynamic = np.zeros(len(classes.occ_class_names) + 1, dtype=bool)
    dynamic[[classes.occ_class_names.index(n) for n in classes.dynamic_class_names]] = True
    return dynamic


def build_ray_targets(
    key_info: dict,
    candidates: tuple[dict[str, np.ndarray], list[tuple[dict, str]]],
    config: TargetConfig,
    classes: ClassesConfig,
    grid: VoxelGrid,
    bev_aug: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """A fixed-size set of training rays for one sample.

    Args:
        key_info: the current keyframe's info record.
        candidates: :func:`candidate_pixels` of the keyframe and its neighbours.
        bev_aug: [4, 4] BEV augmentation of the sample.
    Returns:
        dict of arrays with R = ``config.num_rays`` rows: origins [R, 3], dirs [R, 3],
        z_per_t [R], depth [R] (camera z, 0 = none), semantics [R] uint8 (ignore_index =
        none), confidence [R], adjacent [R] bool.
    """
    pixels, views = candidates
    num_cls = len(classes.occ_class_names)
    class_w = class_balance_weights(
        pixels["semantics"], num_cls + 1, config.class_balance_alpha, classes.ignore_index
    )
    dynamic = dynamic_class_mask(classes)
    weights = ray_weights(
        pixels["semantics"],
        pixels["adjacent"],
        class_w,
        dynamic,
        config.adjacent_weight,
        classes.ignore_index,
    )
    admit = unlabelled_quota(
        pixels["semantics"] != classes.ignore_index,
        int(config.max_unlabelled_share * config.num_rays),
    )

    def reachable(index: np.ndarray) -> np.ndarray:
        rays = pixel_ray_geometry(pixels, index, views, key_info, bev_aug)
        return admit(index, inside_grid(rays, grid))

    try:
        chosen = draw_reachable_rays(weights, config.num_rays, reachable, rng)
    except ValueError as error:
        raise ValueError(f"sample {key_info['token']}: {error}") from error
    return ray_table(pixels, chosen, views, key_info, bev_aug)


def ray_table(
    pixels: dict[str, np.ndarray],
    index: np.ndarray,
    views: list[tuple[dict, str]],
    key_info: dict,
    bev_aug: np.ndarray,
) -> dict[str, np.ndarray]:
    """The rays of the candidate pixels ``index`` [R] with their targets: origins [R, 3],
    dirs [R, 3], z_per_t, depth, semantics, confidence and adjacent [R]."""
    rays = pixel_ray_geometry(pixels, index, views, key_info, bev_aug)
    for key in ("semantics", "confidence", "adjacent"):
        rays[key] = pixels[key][index]
    return rays


def build_query_rays(
    key_info: dict,
    candidates: tuple[dict[str, np.ndarray], list[tuple[dict, str]]],
    config: TargetConfig,
    classes: ClassesConfig,
    bev_aug: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """``config.query_rays`` rays with depth for the ray-query losses alone.

    Drawn uniformly among the candidates with depth (no class balance: they label space, not
    classes), adjacent-frame rays at ``adjacent_weight`` and never on a dynamic class (like
    the rendered rays). A ray whose surface lies beyond the grid is kept: its free space
    inside the grid is still known.

    Args:
        key_info, candidates, bev_aug: as for :func:`build_ray_targets`.
    Returns:
        the fields of :func:`build_ray_targets` with R = ``config.query_rays``.
    Raises:
        ValueError: no candidate of the sample has depth.
    """
    pixels, views = candidates
    dynamic = dynamic_class_mask(classes)
    weights = ray_weights(
        pixels["semantics"],
        pixels["adjacent"],
        np.ones(len(dynamic)),
        dynamic,
        config.adjacent_weight,
        classes.ignore_index,
    )
    weights = np.where(pixels["depth"] > 0, weights, 0.0)
    try:
        chosen = draw_reachable_rays(
            weights, config.query_rays, lambda index: np.ones(len(index), dtype=bool), rng
        )
    except ValueError as error:
        raise ValueError(f"sample {key_info['token']}, query rays: {error}") from error
    return ray_table(pixels, chosen, views, key_info, bev_aug)


def ray_tensors(rays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The arrays of a ray table as (contiguous) tensors."""
    return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in rays.items()}


def input_depth_image(
    targets: PixelTargets, img_aug: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Target depths of one camera rasterised into the augmented input image.

    Args:
        targets: pixel targets in original image coordinates.
        img_aug: [3, 3] original -> augmented image coordinates.
        size: (H, W) of the augmented image.
    Returns:
        [H, W] float32 camera-z depth, the nearest target per pixel, 0 where none.
    """
    height, width = size
    has_depth = targets.depth > 0
    uv = targets.uv[has_depth] @ img_aug[:2, :2].T + img_aug[:2, 2]
    return nearest_depth_image(uv, targets.depth[has_depth], width, height)
