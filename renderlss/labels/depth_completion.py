"""Classical depth completion on the CPU: fill small holes of a sparse depth image by
morphological closing (the idea of IP-Basic), with a confidence channel that tells measured
from filled pixels.

Depth is inverted before the morphology (near = large) so that a dilation propagates the
nearest neighbour's depth: a hole on an object then takes the object's depth rather than
the background's. A closing (dilation then erosion) fills holes narrower than the kernel
but does not grow the outer boundary of the measured region, so sky stays empty.
"""

from __future__ import annotations

import cv2
import numpy as np


def close_holes(depth: np.ndarray, kernel_size: int) -> np.ndarray:
    """[H, W] float32: a closing of the inverted depth, mapped back to depth (0 = none).

    Args:
        depth: [H, W] sparse depth, 0 where empty.
        kernel_size: diameter in pixels of the elliptic structuring element (odd, >= 3).
    """
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd number >= 3, got {kernel_size}")
    valid = depth > 0
    if not valid.any():
        return np.zeros_like(depth, dtype=np.float32)
    ceiling = float(depth[valid].max()) + 1.0
    inverted = np.where(valid, ceiling - depth, 0.0).astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    closed = cv2.morphologyEx(
        inverted, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.where(closed > 0, ceiling - closed, 0.0).astype(np.float32)


def complete_depth(
    depth: np.ndarray, kernel_sizes: tuple[int, ...], filled_confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fill holes of a sparse depth image, keeping every measured pixel as it was.

    Args:
        depth: [H, W] sparse depth, 0 where empty.
        kernel_sizes: closings applied in turn, each filling what is still empty.
        filled_confidence: confidence of a filled pixel, in (0, 1).
    Returns:
        depth [H, W] float32 (0 where still empty) and confidence [H, W] float32: 1 measured,
        ``filled_confidence`` filled, 0 none.
    """
    if not 0.0 < filled_confidence < 1.0:
        raise ValueError(f"filled_confidence must lie in (0, 1), got {filled_confidence}")
    out = depth.astype(np.float32)
    for size in kernel_sizes:
        closed = close_holes(out, size)
        out = np.where(out > 0, out, closed)
    confidence = np.where(depth > 0, 1.0, np.where(out > 0, filled_confidence, 0.0))
    return out, confidence.astype(np.float32)
