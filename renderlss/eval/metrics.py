"""Voxel mIoU of the Occ3D benchmark, as a mergeable confusion-matrix accumulator.

Metrics work on torch tensors (numpy arrays are accepted and converted) so that distributed
evaluation can sum its accumulators with one ``all_reduce``. Every accumulator of
``renderlss.eval`` keeps its whole state as one tensor of sums: merging two of them is
addition, so the result over all processes equals the result of one process that saw
every sample.

Occ3D convention: a ``(K + 1) x (K + 1)`` confusion matrix (``K`` semantic classes, index
``K`` = free) over the voxels of the evaluation mask; IoU per class; the mIoU is the mean
over the ``K`` semantic classes, so free is left out of the mean but a voxel of class ``c``
predicted free still counts as a false negative of ``c``. A class with no voxel in the
ground truth and none in the prediction over the whole evaluation set has IoU 0/0: it is
NaN and left out of every mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def as_tensor(values: ArrayLike, device: torch.device | None = None) -> Tensor:
    """A tensor view of a tensor or numpy array (no copy when already on ``device``)."""
    return torch.as_tensor(values, device=device)


class SumAccumulator:
    """Base of metric accumulators whose whole state is one tensor of sums.

    ``state()`` returns that tensor, ``merge``/``merge_state`` add another accumulator's
    state, and ``all_reduce`` sums the state over all processes of the default process group
    when ``torch.distributed`` is initialised (and does nothing otherwise, so single-process
    evaluation needs no process group).
    """

    def __init__(self, sums: Tensor) -> None:
        self._sums = sums

    def state(self) -> Tensor:
        """A copy of the accumulated sums (shape and dtype fixed per accumulator)."""
        return self._sums.clone()

    def merge_state(self, state: Tensor) -> None:
        """Add sums from ``state()`` of an accumulator built with the same arguments."""
        if state.shape != self._sums.shape or state.dtype != self._sums.dtype:
            raise ValueError(
                f"{type(self).__name__}: cannot merge a state of shape {tuple(state.shape)} "
                f"{state.dtype} into {tuple(self._sums.shape)} {self._sums.dtype}"
            )
        self._sums += state.to(self._sums.device)

    def merge(self, other: SumAccumulator) -> None:
        """Add everything ``other`` accumulated (same type, same arguments)."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self.merge_state(other._sums)

    def all_reduce(self, device: torch.device | str | None = None) -> None:
        """Sum the state over all processes, in place; a no-op without a process group.

        Args:
            device: where the collective runs (a CUDA device for the nccl backend); defaults
                to the device the state lives on.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        buffer = self._sums.to(device) if device is not None else self._sums
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        self._sums.copy_(buffer)

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._sums.zero_()


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, valid: Tensor | None = None
) -> Tensor:
    """Counts of (target, prediction) pairs.

    Args:
        pred, target: [...] integer labels in ``[0, num_classes)`` where ``valid``.
        valid: [...] bool, the elements to count (all when None).
    Returns:
        [num_classes, num_classes] int64; rows are the target class, columns the prediction.
    """
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    if valid is not None:
        keep = valid.reshape(-1).bool()
        pred, target = pred[keep], target[keep]
    flat = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def iou_from_confusion(confusion: Tensor) -> Tensor:
    """Per-class IoU ``TP / (TP + FP + FN)`` of a confusion matrix.

    Args:
        confusion: [C, C] counts, rows target, columns prediction.
    Returns:
        [C] float64; NaN for a class absent from both target and prediction.
    """
    counts = confusion.double()
    tp = counts.diagonal()
    union = counts.sum(dim=0) + counts.sum(dim=1) - tp
    return tp / union  # 0 / 0 -> NaN by design: an absent class has no IoU


def nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the non-NaN entries (NaN when there are none), without numpy's warning."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    return float(finite.mean()) if finite.size else math.nan


def class_subset(class_names: Sequence[str], excluded_names: Sequence[str]) -> list[int]:
    """Indices of ``class_names`` not named in ``excluded_names`` (each must be a class)."""
    unknown = sorted(set(excluded_names) - set(class_names))
    if unknown:
        raise ValueError(f"excluded class names {unknown} are not in the class list {class_names}")
    excluded = set(excluded_names)
    return [i for i, name in enumerate(class_names) if name not in excluded]


def check_labels(
    labels: Tensor, num_labels: int, what: str, ignore_index: int | None = None
) -> None:
    """Raise a ValueError naming ``what`` when a label is outside ``[0, num_labels)``
    (``ignore_index`` allowed)."""
    bad = (labels < 0) | (labels >= num_labels)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        allowed = f"0..{num_labels - 1}" + (
            f" or {ignore_index}" if ignore_index is not None else ""
        )
        raise ValueError(f"{what}: labels {values} outside {allowed}")


def occ3d_eval_mask(
    labels: Mapping[str, ArrayLike], which: Literal["camera", "lidar", "none"], where: str
) -> ArrayLike | None:
    """The Occ3D visibility mask to evaluate on: ``mask_camera``, ``mask_lidar`` or none.

    Args:
        labels: the arrays of an Occ3D ``labels.npz`` (or any mapping with those keys).
        which: ``"camera"`` (the benchmark's setting), ``"lidar"`` or ``"none"``.
        where: names the file or sample in the error message.
    Returns:
        [X, Y, Z] mask (non-zero = evaluated) or None for ``"none"``.
    """
    if which == "none":
        return None
    if which not in ("camera", "lidar"):
        raise ValueError(f"{where}: mask must be 'camera', 'lidar' or 'none', got {which!r}")
    key = f"mask_{which}"
    if key not in labels:
        raise ValueError(f"{where}: no field {key!r} (fields: {sorted(labels)})")
    return labels[key]


def miou_key(num_classes: int) -> str:
    """The metric name of an mIoU over ``num_classes`` classes: ``mIoU_<K>_classes``."""
    return f"mIoU_{num_classes}_classes"


@dataclass(frozen=True)
class OccupancyIoUResult:
    """Voxel IoU over an evaluation set. IoUs are fractions in [0, 1]; NaN = class absent."""

    class_names: tuple[str, ...]  # the K semantic classes (free excluded)
    iou: np.ndarray  # [K + 1] float64, per class then free
    miou: float  # mean over the K semantic classes
    excluded_class_names: tuple[str, ...]
    miou_subset: float  # mean over the classes not in excluded_class_names
    geometry_iou: float  # occupied-vs-free IoU (any class counts as occupied)

    @property
    def subset_size(self) -> int:
        return len(self.class_names) - len(self.excluded_class_names)

    def as_dict(self) -> dict[str, float]:
        """Flat scalars for logging: ``mIoU_<K>_classes``, the subset's mean, per-class IoU."""
        out = {
            miou_key(len(self.class_names)): self.miou,
            miou_key(self.subset_size): self.miou_subset,
            "geometry_IoU": self.geometry_iou,
        }
        out.update({f"IoU/{name}": float(v) for name, v in zip(self.class_names, self.iou)})
        out["IoU/free"] = float(self.iou[-1])
        return out

    def table(self) -> str:
        """Aligned plain-text table of per-class IoU (percent) and the means."""
        summary = {f"mIoU ({len(self.class_names)} classes)": [self.miou]}
        if self.excluded_class_names:
            label = (
                f"mIoU ({self.subset_size} classes, without {', '.join(self.excluded_class_names)})"
            )
            summary[label] = [self.miou_subset]
        summary["geometry IoU"] = [self.geometry_iou]
        names = [*self.class_names, "free"]
        return format_class_table(names, {"IoU": self.iou}, summary)


class OccupancyIoU(SumAccumulator):
    """Occ3D voxel mIoU accumulated over samples as a ``(K + 1) x (K + 1)`` confusion matrix.

    Args:
        class_names: the K semantic classes in label order (from the config's class list);
            label ``K`` is free.
        ignore_index: ground-truth label that is never counted (e.g. 255).
        device: where the confusion matrix lives (a CUDA device for nccl all-reduce).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        ignore_index: int | None = 255,
        device: torch.device | str | None = None,
    ) -> None:
        self.class_names = tuple(class_names)
        self.num_labels = len(self.class_names) + 1
        self.ignore_index = ignore_index
        super().__init__(
            torch.zeros(self.num_labels, self.num_labels, dtype=torch.int64, device=device)
        )

    @property
    def confusion(self) -> Tensor:
        """[K + 1, K + 1] int64, rows ground truth, columns prediction."""
        return self._sums

    def update(
        self,
        pred: ArrayLike,
        target: ArrayLike,
        mask: ArrayLike | None = None,
        where: str = "sample",
    ) -> None:
        """Count one sample (or a batch) of voxels.

        Args:
            pred: [...] predicted labels in ``[0, K]``.
            target: [...] ground-truth labels in ``[0, K]`` or ``ignore_index``.
            mask: [...] non-zero where the voxel is evaluated (Occ3D ``mask_camera``); all
                voxels when None.
            where: names the sample (file, token) in error messages.
        """
        device = self._sums.device
        pred, target = as_tensor(pred, device), as_tensor(target, device)
        if pred.shape != target.shape:
            raise ValueError(
                f"{where}: prediction shape {tuple(pred.shape)} != ground truth "
                f"{tuple(target.shape)}"
            )
        valid = torch.ones_like(target, dtype=torch.bool)
        if mask is not None:
            mask = as_tensor(mask, device)
            if mask.shape != target.shape:
                raise ValueError(
                    f"{where}: mask shape {tuple(mask.shape)} != ground truth {tuple(target.shape)}"
                )
            valid = mask != 0
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        check_labels(pred.long(), self.num_labels, f"{where}: prediction")
        check_labels(target.long(), self.num_labels, f"{where}: ground truth", self.ignore_index)
        self._sums += confusion_matrix(pred, target, self.num_labels, valid)

    def compute(self, excluded_class_names: Sequence[str] = ()) -> OccupancyIoUResult:
        """IoU per class, the K-class mIoU and the mean without ``excluded_class_names``
        (e.g. ``["others", "other_flat"]`` for the 15-class mIoU quoted by many papers)."""
        iou = iou_from_confusion(self._sums).cpu().numpy()
        num_classes = len(self.class_names)
        subset = class_subset(self.class_names, excluded_class_names)
        counts = self._sums.double().cpu()
        free = num_classes
        occupied_tp = counts[:free, :free].sum()
        occupied_union = counts.sum() - counts[free, free]
        geometry = float(occupied_tp / occupied_union) if occupied_union > 0 else math.nan
        return OccupancyIoUResult(
            class_names=self.class_names,
            iou=iou,
            miou=nanmean(iou[:num_classes]),
            excluded_class_names=tuple(excluded_class_names),
            miou_subset=nanmean(iou[subset]),
            geometry_iou=geometry,
        )


def format_class_table(
    row_names: Sequence[str],
    columns: Mapping[str, Sequence[float]],
    summary: Mapping[str, Sequence[float]] | None = None,
    scale: float = 100.0,
    decimals: int = 2,
) -> str:
    """Aligned plain-text table: one row per class, then summary rows under a rule.

    Args:
        row_names: [R] class names.
        columns: column title -> [R] values (fractions; printed times ``scale``).
        summary: row title -> one value per column (e.g. the means).
        scale: 100 prints fractions as percentages.
        decimals: digits after the point; NaN prints as ``nan``.
    """
    titles = list(columns)
    for name, values in (summary or {}).items():
        if len(values) != len(titles):
            raise ValueError(
                f"summary row {name!r} has {len(values)} values for {len(titles)} columns"
            )

    def cell(value: float) -> str:
        return "nan" if math.isnan(value) else f"{value * scale:.{decimals}f}"

    rows = [
        [name, *(cell(float(columns[t][i])) for t in titles)] for i, name in enumerate(row_names)
    ]
    summary_rows = [
        [name, *(cell(float(v)) for v in values)] for name, values in (summary or {}).items()
    ]
    header = ["class", *titles]
    widths = [max(len(r[c]) for r in [header, *rows, *summary_rows]) for c in range(len(header))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(row[1:], widths[1:]))]).rstrip()

    rule = "-" * len(line(header))
    out = [line(header), rule, *map(line, rows)]
    if summary_rows:
        out += [rule, *map(line, summary_rows)]
    return "\n".join(out)


def json_safe(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """Metrics for a JSON file, which has no NaN: undefined values become null."""
    return {key: None if math.isnan(value) else value for key, value in metrics.items()}


def format_rows(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """Aligned plain-text table of named rows of fractions, printed as percentages."""
    header = ["", *columns]

    def cell(value: float) -> str:
        return "nan" if math.isnan(value) else f"{value * 100:.2f}"

    body = [
        [name, *(cell(values.get(c, math.nan)) for c in columns)] for name, values in rows.items()
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(row[1:], widths[1:]))])
        for row in [header, *body]
    ]
    return "\n".join(lines)
