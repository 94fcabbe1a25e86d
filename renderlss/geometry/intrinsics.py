"""Validation of pinhole camera matrices: every reader of a camera's intrinsics goes through
:func:`validated_intrinsic`, so a malformed matrix stops at the file that holds it instead of
turning into a ``Singular matrix`` (or silently wrong rays) far downstream."""

from __future__ import annotations

import numpy as np

# Beyond this condition number a float64 inverse has lost all meaningful digits: the matrix
# is singular for every practical purpose (a real camera's is around 1e3).
MAX_CONDITION_NUMBER = 1e12


def intrinsic_problem(matrix: np.ndarray) -> str:
    """What is wrong with a camera matrix, or ``""`` when it is a valid one.

    Valid: [3, 3], finite, focal lengths fx = K[0, 0] and fy = K[1, 1] > 0, last row
    [0, 0, 1], invertible (condition number below :data:`MAX_CONDITION_NUMBER`).
    """
    if matrix.shape != (3, 3):
        return f"has shape {list(matrix.shape)}, expected 3x3"
    if not np.all(np.isfinite(matrix)):
        return "contains NaN or Inf"
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        return f"has focal lengths fx={matrix[0, 0]:g}, fy={matrix[1, 1]:g}; both must be > 0"
    if not np.array_equal(matrix[2], [0.0, 0.0, 1.0]):
        return f"has last row {matrix[2].tolist()}, expected [0, 0, 1]"
    condition = np.linalg.cond(matrix)
    if not condition < MAX_CONDITION_NUMBER:
        return f"is singular (condition number {condition:.3g})"
    return ""


def validated_intrinsic(value: object, what: str) -> np.ndarray:
    """[3, 3] float64 camera matrix of a stored value, checked by :func:`intrinsic_problem`.

    Args:
        value: the stored matrix (nested lists or an array).
        what: names the file, record and field in the error message.
    Raises:
        ValueError: ``"<what> <problem>: <value>"`` for anything but a valid camera matrix.
    """
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a 3x3 matrix of numbers: {value!r}") from None
    problem = intrinsic_problem(matrix)
    if problem:
        raise ValueError(f"{what} {problem}: {matrix.tolist()}")
    return matrix


# nuScenes, the devkit, OpenCV and mmdet3d centre pixel (r, c) at (u, v) = (c, r); renderlss
# puts it at (c + 0.5, r + 0.5), so that a point falls in pixel floor(u) and resizing by s
# scales coordinates by exactly s. The two camera matrices differ by this principal-point
# shift (docs/formats.md).
PIXEL_CENTRE_SHIFT = 0.5


def corner_convention_intrinsic(matrix: np.ndarray) -> np.ndarray:
    """[3, 3] camera matrix of a dataset (pixel centres at integer coordinates, as the devkit
    projects) in renderlss's convention (pixel centres at ``+0.5``): ``cx, cy`` + 0.5."""
    shifted = np.array(matrix, dtype=np.float64)
    shifted[:2, 2] += PIXEL_CENTRE_SHIFT
    return shifted


def centre_convention_intrinsic(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`corner_convention_intrinsic`: the matrix a nuScenes-format file stores."""
    shifted = np.array(matrix, dtype=np.float64)
    shifted[:2, 2] -= PIXEL_CENTRE_SHIFT
    return shifted
