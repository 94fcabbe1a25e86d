"""Image and BEV augmentation as explicit matrices.

Image augmentation is one [3, 3] matrix ``img_aug`` taking original continuous image
coordinates ``(u, v, 1)`` to augmented ones (resize, crop, flip, rotate, in that order), so a
camera-frame point ``p`` shows at ``img_aug @ K @ p / z`` in the augmented image. BEV
augmentation is one [4, 4] matrix ``bev_aug`` acting on key-ego points (rotation about ego
z, then flips about the grid centre); the voxel labels are resampled with the same map.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from renderlss.data.config import BevAugConfig, ImageAugConfig
from renderlss.geometry.grid import VoxelGrid


@dataclass(frozen=True)
class ImageAugParams:
    """One draw of the image augmentation for one camera."""

    resized_size: tuple[int, int]  # (H, W) of the resized image
    crop: tuple[int, int]  # (x0, y0): top-left corner of the kept window in resized pixels
    flip: bool  # mirror left-right after cropping
    rotate_deg: float  # counter-clockwise on screen, about the output image centre


@dataclass(frozen=True)
class BevAugParams:
    """One draw of the BEV augmentation."""

    rotate_deg: float  # about ego +z (counter-clockwise seen from above)
    flip_x: bool  # x -> x0 + x1 - x (grid range along x)
    flip_y: bool


def sample_image_aug(
    image_size: tuple[int, int],
    input_size: tuple[int, int],
    cfg: ImageAugConfig,
    rng: np.random.Generator | None,
) -> ImageAugParams:
    """Draw augmentation parameters; ``rng=None`` gives the deterministic eval transform.

    Args:
        image_size: (H, W) of the original image; input_size: (H, W) of the network input.
    """
    (height, width), (out_h, out_w) = image_size, input_size
    base = out_w / width
    if rng is None:
        resize, bottom = base, float(np.mean(cfg.bottom_crop_range))
    else:
        resize = base + rng.uniform(*cfg.resize_range)
        bottom = rng.uniform(*cfg.bottom_crop_range)
    new_h, new_w = int(round(height * resize)), int(round(width * resize))
    y0 = int((1.0 - bottom) * new_h) - out_h
    spare_w = max(0, new_w - out_w)
    if rng is None:
        return ImageAugParams((new_h, new_w), (spare_w // 2, y0), False, 0.0)
    x0 = int(rng.integers(0, spare_w + 1))
    flip = bool(rng.uniform() < cfg.flip_prob)
    return ImageAugParams((new_h, new_w), (x0, y0), flip, float(rng.uniform(*cfg.rotate_range)))


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _post_resize_matrix(params: ImageAugParams, input_size: tuple[int, int]) -> np.ndarray:
    """[3, 3] crop, flip, rotate: resized-image coordinates -> augmented coordinates."""
    out_h, out_w = input_size
    matrix = _translation(-params.crop[0], -params.crop[1])
    if params.flip:
        matrix = np.array([[-1.0, 0.0, out_w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ matrix
    if params.rotate_deg:
        a = np.radians(params.rotate_deg)
        # v points down, so a counter-clockwise turn on screen sends +u towards -v.
        rot = np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0, 0, 1.0]])
        about_centre = (
            _translation(out_w / 2, out_h / 2) @ rot @ _translation(-out_w / 2, -out_h / 2)
        )
        matrix = about_centre @ matrix
    return matrix


def image_aug_matrix(
    params: ImageAugParams, image_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """[3, 3] float64 map from original (u, v, 1) to augmented image coordinates."""
    (height, width), (new_h, new_w) = image_size, params.resized_size
    scale = np.diag([new_w / width, new_h / height, 1.0])
    return _post_resize_matrix(params, input_size) @ scale


def apply_image_aug(
    image: np.ndarray, params: ImageAugParams, input_size: tuple[int, int]
) -> np.ndarray:
    """Augmented image ``[H_in, W_in, C]`` of ``image [H, W, C]`` (zeros where the window
    leaves the image). Resizing is done separately (area filter when shrinking) so that
    downscaling does not alias; the rest is one bilinear warp."""
    new_h, new_w = params.resized_size
    shrink = new_w < image.shape[1]
    resized = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    # OpenCV puts pixel centres at integers, ours at +0.5: conjugate by the half-pixel shift.
    warp = (
        _translation(-0.5, -0.5) @ _post_resize_matrix(params, input_size) @ _translation(0.5, 0.5)
    )
    out_h, out_w = input_size
    return cv2.warpAffine(
        resized,
        warp[:2],
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def sample_bev_aug(cfg: BevAugConfig, rng: np.random.Generator | None) -> BevAugParams:
    """Draw BEV augmentation parameters; ``rng=None`` gives the identity."""
    if rng is None:
        return BevAugParams(0.0, False, False)
    return BevAugParams(
        rotate_deg=float(rng.uniform(*cfg.rotate_range)),
        flip_x=bool(rng.uniform() < cfg.flip_x_prob),
        flip_y=bool(rng.uniform() < cfg.flip_y_prob),
    )


def bev_aug_matrix(params: BevAugParams, grid: VoxelGrid) -> np.ndarray:
    """[4, 4] float64 map of key-ego points: rotation about +z, then flips about the grid
    centre (for a grid symmetric about the ego origin these are the usual x -> -x, y -> -y)."""
    a = np.radians(params.rotate_deg)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    for axis, flip in ((0, params.flip_x), (1, params.flip_y)):
        if flip:
            mirror = np.eye(4)
            mirror[axis, axis] = -1.0
            mirror[axis, 3] = grid.lower[axis] + grid.upper[axis]
            matrix = mirror @ matrix
    return matrix


def rotate_voxels(volume: np.ndarray, rotate_deg: float, grid: VoxelGrid, fill: int) -> np.ndarray:
    """Rotate a [X, Y, Z] volume about ego +z by nearest lookup: each output voxel takes the
    value at its centre rotated back; centres that come from outside the grid get ``fill``."""
    if rotate_deg == 0.0:
        return volume
    a = np.radians(rotate_deg)
    # Rotation about z moves whole columns: resample the (x, y) centres of the lowest layer.
    nx, ny, _ = grid.shape
    x = grid.lower[0] + (np.arange(nx) + 0.5) * grid.size[0]
    y = grid.lower[1] + (np.arange(ny) + 0.5) * grid.size[1]
    x, y = np.meshgrid(x, y, indexing="ij")  # [X, Y]
    source = np.stack(
        [
            np.cos(a) * x + np.sin(a) * y,
            -np.sin(a) * x + np.cos(a) * y,
            np.full_like(x, grid.lower[2] + 0.5 * grid.size[2]),
        ],
        axis=-1,
    )
    index, valid = grid.point_to_index(source.reshape(-1, 3))
    out = np.full_like(volume, fill)
    flat = out.reshape(-1, volume.shape[2])
    flat[valid] = volume[index[valid, 0], index[valid, 1]]
    return out


def apply_bev_aug_to_voxels(
    volume: np.ndarray, params: BevAugParams, grid: VoxelGrid, fill: int
) -> np.ndarray:
    """[X, Y, Z] labels in the augmented frame: the label at ``bev_aug @ p`` afterwards is the
    label at ``p`` before (up to nearest-voxel resampling of the rotation)."""
    if volume.shape != grid.shape:
        raise ValueError(f"volume shape {volume.shape} does not match grid shape {grid.shape}")
    out = rotate_voxels(volume, params.rotate_deg, grid, fill)
    if params.flip_x:
        out = out[::-1]
    if params.flip_y:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)
