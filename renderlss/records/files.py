"""Files that info records name: camera images, and the per-image artifacts that tools write
next to them (``<folder>/<CAM>/<image stem>.npz``: dense depth, 2D labels, the oracle)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def output_path(out_dir: str | Path, camera: str, image_path: str) -> Path:
    """``<out>/<CAM>/<image file stem>.npz`` of one camera image."""
    return Path(out_dir) / camera / f"{Path(image_path).stem}.npz"


def read_rgb_image(path: str | Path, where: str) -> np.ndarray:
    """[H, W, 3] uint8 RGB pixels of an image file.

    Args:
        where: what the image belongs to (e.g. ``sample <token>``), named in errors.
    Raises:
        FileNotFoundError: no such file. ValueError: the file cannot be decoded.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: image file missing ({where})")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: image file cannot be decoded ({where})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
