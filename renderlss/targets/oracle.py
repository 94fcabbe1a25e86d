"""Per-pixel ground truth as a render-target source: exact depth and class at every pixel,
from the synthetic oracle or a folder of the user's own maps in its layout.

A diagnostic source: trained on it, rendering supervision has no label noise and no holes,
so a model that cannot overfit a few keyframes with it has a fault in rendering or losses,
not in the supervision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderlss.geometry import pixel_grid
from renderlss.records.files import output_path
from renderlss.records.oracle import ORACLE_SKY, load_oracle
from renderlss.targets.pixel_targets import PixelTargets


def oracle_targets(depth: np.ndarray, semantics: np.ndarray, stride: int) -> PixelTargets:
    """Targets at every ``stride``-th row and column of an oracle image, sky left out.

    Args:
        depth: [H, W] float32 camera z (0 = sky); semantics: [H, W] uint8 (``ORACLE_SKY``).
    Returns:
        Targets at pixel centres with the oracle's depth and class, confidence 1.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    height, width = depth.shape
    keep = (semantics != ORACLE_SKY) & (depth > 0)
    sampled = np.zeros_like(keep)
    sampled[::stride, ::stride] = True
    rows, cols = np.nonzero(keep & sampled)
    return PixelTargets(
        uv=pixel_grid(height, width)[rows, cols],
        depth=depth[rows, cols].astype(np.float32),
        semantics=semantics[rows, cols].astype(np.uint8),
        confidence=np.ones(len(rows), dtype=np.float32),
    )


class OracleTargetSource:
    """Depth and class targets read from per-image ground-truth maps (a :class:`TargetSource`).

    Args:
        folder: ``<folder>/<CAM>/<image stem>.npz`` with depth and semantics: the synthetic
            ``<dataroot>/oracle`` (``tools/make_synthetic.py``) or the user's own maps.
        stride: pixel subsampling of :func:`oracle_targets`.
    """

    def __init__(self, folder: str | Path, stride: int = 1) -> None:
        self.folder = Path(folder)
        self.stride = stride

    def __call__(self, info: dict, cameras: list[str]) -> dict[str, PixelTargets]:
        targets = {}
        for cam in cameras:
            cam_info = info["cams"][cam]
            path = output_path(self.folder, cam, cam_info["data_path"])
            size = (int(cam_info["height"]), int(cam_info["width"]))
            depth, semantics = load_oracle(path, f"sample {info['token']} {cam}", size)
            targets[cam] = oracle_targets(depth, semantics, self.stride)
        return targets
