"""Files that info records name: camera images, and the per-image artifacts that tools write
next to them (``<folder>/<CAM>/<image stem>.npz``: dense depth, 2D labels, the oracle)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

JPEG_START = b"\xff\xd8"  # start-of-image marker
JPEG_END = b"\xff\xd9"  # end-of-image marker


def output_path(out_dir: str | Path, camera: str, image_path: str) -> Path:
    """``<out>/<CAM>/<image file stem>.npz`` of one camera image."""
    return Path(out_dir) / camera / f"{Path(image_path).stem}.npz"


def jpeg_is_truncated(data: np.ndarray) -> bool:
    """Whether [N] uint8 file bytes are a JPEG that stops before its end-of-image marker.

    libjpeg decodes such a file anyway, greys out the missing rows and only prints
    "Premature end of JPEG file"; the marker cannot occur inside entropy-coded data (a 0xFF
    byte there is always followed by 0x00 or a restart marker), so its absence at the end
    means the file was cut. Zero padding after the marker is allowed.
    """
    if data[: len(JPEG_START)].tobytes() != JPEG_START:
        return False
    return not bytes(data).rstrip(b"\x00").endswith(JPEG_END)


def read_rgb_image(
    path: str | Path, where: str, expected_size: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """[H, W, 3] uint8 RGB pixels of an image file.

    Args:
        where: what the image belongs to (e.g. ``sample <token>``), named in errors.
        expected_size: (H, W) that the image must have (e.g. as its info record says);
            (0, 0) = not checked.
    Raises:
        FileNotFoundError: no such file. ValueError: the file cannot be decoded, is a
            truncated JPEG (see :func:`jpeg_is_truncated`) or has not the expected size.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: image file missing ({where})")
    data = np.fromfile(path, dtype=np.uint8)
    if jpeg_is_truncated(data):
        raise ValueError(f"{path}: JPEG file is truncated (no end-of-image marker) ({where})")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"{path}: image file cannot be decoded ({where})")
    if all(expected_size) and image.shape[:2] != tuple(expected_size):
        raise ValueError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]}, expected "
            f"{expected_size[1]}x{expected_size[0]} ({where})"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
