"""Occ3D labels on a finer or larger grid than the model's: crop, then pool.

A label grid *nests* a model grid when each model voxel is a whole block of label voxels:
per axis an integer ratio ``model voxel size / label voxel size``, a model lower corner on a
label voxel boundary and the model grid inside the label grid. Pooling a block of
sub-voxels into one model voxel (docs/formats.md):

- ``semantics``: occupied if any sub-voxel is occupied (neither free nor ignore), with the
  majority class of the occupied sub-voxels (ties: the lowest class index); free if every
  sub-voxel is free; ignore otherwise (no occupied sub-voxel, some ignored).
- ``mask_camera`` / ``mask_lidar``: observed if any sub-voxel is observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from renderlss.geometry.grid import VoxelGrid

# Grids are given in decimal metres (0.4, -25.6): ratios and offsets are whole numbers only up
# to floating-point rounding.
_TOLERANCE = 1e-6

SEMANTICS = "semantics"
MASK_FIELDS = ("mask_lidar", "mask_camera")


@dataclass(frozen=True)
class LabelNesting:
    """Where a model grid lies in a label grid.

    ``crop`` selects the label voxels the model grid covers; ``ratio`` [3] is the number of
    label voxels per model voxel along x, y, z.
    """

    crop: tuple[slice, slice, slice]
    ratio: tuple[int, int, int]

    @property
    def is_identity(self) -> bool:
        """Whether the label grid is the model grid."""
        return self.ratio == (1, 1, 1) and all(s.start == 0 for s in self.crop)


def _whole(values: np.ndarray) -> np.ndarray | None:
    """``values`` [3] rounded to integers, or None when one is not a whole number."""
    rounded = np.round(values)
    if np.any(np.abs(values - rounded) > _TOLERANCE * np.maximum(1.0, np.abs(values))):
        return None
    return rounded.astype(int)


def nest(
    label_grid: VoxelGrid, model_grid: VoxelGrid, where: str = "data.label_grid"
) -> LabelNesting:
    """The crop and the pooling ratios that take labels on ``label_grid`` to ``model_grid``.

    Raises:
        ValueError (prefixed ``where``): a voxel-size ratio that is not a whole number >= 1,
        a model lower corner off the label voxel boundaries, or a model grid that reaches
        outside the label grid.
    """
    described = (
        f"{where}: the label grid {label_grid.point_cloud_range} at {label_grid.voxel_size} m "
        f"does not nest the model grid {model_grid.point_cloud_range} at "
        f"{model_grid.voxel_size} m"
    )
    ratio = _whole(model_grid.size / label_grid.size)
    if ratio is None:
        raise ValueError(
            f"{described}: model voxels must be whole multiples of the label voxels per axis "
            f"(ratios {(model_grid.size / label_grid.size).tolist()})"
        )
    offset = _whole((model_grid.lower - label_grid.lower) / label_grid.size)
    if offset is None:
        raise ValueError(
            f"{described}: the model grid's lower corner is not on a label voxel boundary"
        )
    end = offset + np.asarray(model_grid.shape) * ratio
    if np.any(offset < 0) or np.any(end > np.asarray(label_grid.shape)):
        raise ValueError(f"{described}: the model grid reaches outside the label grid")
    crop = tuple(slice(int(a), int(b)) for a, b in zip(offset, end))
    return LabelNesting(crop=crop, ratio=(int(ratio[0]), int(ratio[1]), int(ratio[2])))


def sub_voxels(volume: np.ndarray, nesting: LabelNesting) -> np.ndarray:
    """[X, Y, Z, r] the label voxels of every model voxel (r = the product of the ratios),
    from a label-grid volume [X', Y', Z']."""
    cropped = volume[nesting.crop]
    rx, ry, rz = nesting.ratio
    x, y, z = (n // r for n, r in zip(cropped.shape, nesting.ratio))
    blocks = cropped.reshape(x, rx, y, ry, z, rz).transpose(0, 2, 4, 1, 3, 5)
    return blocks.reshape(x, y, z, rx * ry * rz)


def pool_semantics(
    semantics: np.ndarray, nesting: LabelNesting, free_index: int, ignore_index: int
) -> np.ndarray:
    """[X, Y, Z] uint8 model-grid classes from label-grid classes [X', Y', Z'] (values
    ``0..free_index`` or ``ignore_index``) by the rule of the module docstring."""
    blocks = sub_voxels(semantics, nesting)
    best_count = np.zeros(blocks.shape[:3], dtype=np.int64)
    best_class = np.zeros(blocks.shape[:3], dtype=np.uint8)
    for index in range(free_index):
        count = np.count_nonzero(blocks == index, axis=-1)
        # Strictly more: a tie keeps the lower class index found first.
        better = count > best_count
        best_class[better] = index
        best_count[better] = count[better]
    all_free = np.all(blocks == free_index, axis=-1)
    empty = np.where(all_free, free_index, ignore_index).astype(np.uint8)
    return np.where(best_count > 0, best_class, empty)


def pool_labels(
    labels: Mapping[str, np.ndarray],
    nesting: LabelNesting,
    free_index: int,
    ignore_index: int,
    where: str,
) -> dict[str, np.ndarray]:
    """Occ3D labels on the label grid -> the model grid.

    Args:
        labels: ``semantics``, ``mask_lidar``, ``mask_camera``, each [X', Y', Z'] on the
            label grid (the shape ``nesting`` was made for).
        where: names the file and sample in the error message.
    Returns:
        the same fields, uint8 [X, Y, Z] on the model grid.
    Raises:
        ValueError: ``semantics`` holds a value that is neither a class, free nor ignore.
    """
    semantics = labels[SEMANTICS]
    unknown = (semantics > free_index) & (semantics != ignore_index)
    if np.any(unknown):
        values = np.unique(semantics[unknown]).tolist()
        raise ValueError(
            f"{where}: field 'semantics' holds values {values[:8]} that are neither a class "
            f"(0..{free_index - 1}), free ({free_index}) nor ignore ({ignore_index})"
        )
    if nesting.is_identity:
        # Pooling blocks of one voxel returns the labels unchanged, after a pass per class.
        return {
            name: np.asarray(labels[name], dtype=np.uint8) for name in (SEMANTICS, *MASK_FIELDS)
        }
    pooled = {SEMANTICS: pool_semantics(semantics, nesting, free_index, ignore_index)}
    for name in MASK_FIELDS:
        pooled[name] = np.any(sub_voxels(labels[name], nesting) != 0, axis=-1).astype(np.uint8)
    return pooled
