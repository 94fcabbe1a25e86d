"""Trivial occupancy predictors that ignore the images: the floors a model must beat, scored
with the same mIoU and RayIoU as the model (``renderlss.engine.evaluation``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import torch

from renderlss.data.classes import ClassesConfig
from renderlss.geometry.grid import VoxelGrid


class OccupancyBaseline(Protocol):
    """A predictor that ignores the images: one fixed [X, Y, Z] label volume."""

    def predict(self) -> torch.Tensor: ...


class AllFreeBaseline:
    """Predicts free everywhere: every class IoU is 0, the floor any model must beat."""

    def __init__(self, grid: VoxelGrid, free_index: int) -> None:
        self.labels = torch.full(grid.shape, free_index, dtype=torch.int64)

    def predict(self) -> torch.Tensor:
        """[X, Y, Z] int64."""
        return self.labels


class ColumnMajorityBaseline:
    """The ego-frame prior of the training labels, as one fixed volume.

    ``fit`` counts, over training frames and only on voxels that the frame's mask observes
    (and whose label is not ignore): per voxel, how often it was occupied (any class but
    free) and how often observed; per (x, y) column, how often each non-free class occurred
    in it. ``predict`` marks a voxel occupied when it was occupied in more than half of the
    frames that observed it (never-observed voxels are free) and gives every occupied voxel
    the most frequent non-free class of its column (ties: the lowest class index).
    """

    def __init__(self, grid: VoxelGrid, classes: ClassesConfig) -> None:
        self.free_index = classes.free_index
        self.ignore_index = classes.ignore_index
        x, y, z = grid.shape
        self.occupied = np.zeros((x, y, z), dtype=np.int64)
        self.observed = np.zeros((x, y, z), dtype=np.int64)
        self.column_classes = np.zeros((x, y, self.free_index), dtype=np.int64)
        self.frames = 0

    def fit(self, labels: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> ColumnMajorityBaseline:
        """Count frames of ``(semantics [X, Y, Z], mask [X, Y, Z] or None)``."""
        for semantics, mask in labels:
            if semantics.shape != self.occupied.shape:
                raise ValueError(
                    f"ColumnMajorityBaseline.fit: labels of shape {semantics.shape}, "
                    f"grid {self.occupied.shape}"
                )
            seen = semantics != self.ignore_index
            if mask is not None:
                seen &= np.asarray(mask).astype(bool)
            occupied = seen & (semantics != self.free_index)
            self.observed += seen
            self.occupied += occupied
            x, y, _ = np.nonzero(occupied)
            np.add.at(self.column_classes, (x, y, semantics[occupied].astype(np.int64)), 1)
            self.frames += 1
        return self

    def predict(self) -> torch.Tensor:
        """[X, Y, Z] int64."""
        if self.frames == 0:
            raise ValueError("ColumnMajorityBaseline.predict: fit it on training labels first")
        column_class = self.column_classes.argmax(axis=-1)  # [X, Y]
        occupied = 2 * self.occupied > self.observed
        labels = np.where(occupied, column_class[..., None], self.free_index)
        return torch.from_numpy(labels.astype(np.int64))
