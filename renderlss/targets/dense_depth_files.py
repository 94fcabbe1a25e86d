"""Dense depth files, ``<folder>/<CAM>/<image stem>.npz`` with ``depth`` (float16 [H, W],
camera z in metres, 0 = none) and ``confidence`` (uint8 [H, W], 255 = measured, less =
filled, 0 = none), as written by the dense depth builder (``renderlss.labels.dense_depth``)
and read as a render-target source. Files built with label transfer also hold ``semantics``
(uint8 [H, W], Occ3D class of each measured pixel, the ignore index where none); the field
is optional, files without it give targets without classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderlss.io import atomic_save_npz, load_image_pair
from renderlss.records.files import output_path
from renderlss.targets.pixel_targets import PixelTargets

CONFIDENCE_SCALE = 255  # stored uint8 confidence / 255 = confidence in [0, 1]


def save_dense_depth(
    path: str | Path,
    depth: np.ndarray,
    confidence: np.ndarray,
    semantics: np.ndarray | None = None,
) -> None:
    """Write one dense depth file atomically (float16 depth, uint8 confidence and, when
    given, uint8 [H, W] semantics)."""
    fields = dict(
        depth=depth.astype(np.float16),
        confidence=np.round(np.clip(confidence, 0, 1) * CONFIDENCE_SCALE).astype(np.uint8),
    )
    if semantics is not None:
        fields["semantics"] = semantics.astype(np.uint8)
    atomic_save_npz(path, **fields)


def load_dense_semantics(path: str | Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The optional ``semantics`` [H, W] uint8 of a dense depth file of depth ``shape``, or
    None when the file has none.

    Raises:
        ValueError: semantics of another shape or type, naming the file and the field.
    """
    with np.load(path) as data:
        if "semantics" not in data.files:
            return None
        semantics = data["semantics"]
    if semantics.shape != tuple(shape) or semantics.dtype != np.uint8:
        raise ValueError(
            f"{path}: field 'semantics' must be uint8 {tuple(shape)}, got {semantics.dtype} "
            f"{semantics.shape}"
        )
    return semantics


def load_dense_depth(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a dense depth file.

    Returns:
        depth [H, W] float32 camera z in metres (0 = none) and confidence [H, W] float32 in
        [0, 1] (1 = measured, less = filled, 0 = none).
    Raises:
        FileNotFoundError: no such file. ValueError: unreadable, a missing field, or fields
        of the wrong shape or type, naming the file and the field.
    """
    depth, confidence = load_image_pair(path, "dense depth file", ("depth", "confidence"))
    if confidence.dtype != np.uint8 or not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(
            f"{path}: expected float 'depth' and uint8 'confidence', got {depth.dtype} and "
            f"{confidence.dtype}"
        )
    depth = depth.astype(np.float32)
    if not np.all(np.isfinite(depth)) or np.any(depth < 0):
        raise ValueError(f"{path}: field 'depth' holds negative or non-finite values")
    return depth, confidence.astype(np.float32) / CONFIDENCE_SCALE


def dense_depth_targets(
    path: str | Path, width: int, height: int, ignore_index: int
) -> PixelTargets:
    """Pixel targets of one camera image from its dense depth file: every pixel with depth,
    at its centre in original image coordinates (a downscaled file is mapped up), with the
    stored confidence and the stored class (``ignore_index`` where the file has none).

    Args:
        width, height: size of the original camera image.
    """
    depth, confidence = load_dense_depth(path)
    rows, cols = depth.shape
    if width % cols or height % rows or width // cols != height // rows:
        raise ValueError(
            f"{path}: a {cols}x{rows} depth image is not an integer downscale of the "
            f"{width}x{height} camera image"
        )
    scale = width // cols
    i, j = np.nonzero((depth > 0) & (confidence > 0))
    uv = np.stack([(j + 0.5) * scale, (i + 0.5) * scale], axis=1).astype(np.float64)
    semantics = load_dense_semantics(path, depth.shape)
    return PixelTargets(
        uv=uv,
        depth=depth[i, j],
        semantics=(
            np.full(len(i), ignore_index, dtype=np.uint8) if semantics is None else semantics[i, j]
        ),
        confidence=confidence[i, j],
    )


class DenseDepthTargetSource:
    """Depth targets read from a dense depth folder (a :class:`TargetSource`).

    Args:
        depth_dir: the builder's output folder (``<CAM>/<image stem>.npz``).
        ignore_index: class value of the targets (dense depth carries no class).
    """

    def __init__(self, depth_dir: str | Path, ignore_index: int) -> None:
        self.depth_dir = Path(depth_dir)
        self.ignore_index = ignore_index

    def __call__(self, info: dict, cameras: list[str]) -> dict[str, PixelTargets]:
        targets = {}
        for cam in cameras:
            cam_info = info["cams"][cam]
            path = output_path(self.depth_dir, cam, cam_info["data_path"])
            targets[cam] = dense_depth_targets(
                path, int(cam_info["width"]), int(cam_info["height"]), self.ignore_index
            )
        return targets
