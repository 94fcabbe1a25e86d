"""Depth metrics (AbsRel, SqRel, RMSE, RMSE-log, delta accuracies) as mergeable sums.

With ``p`` the predicted and ``g`` the target depth (camera z, metres) over valid elements:

- AbsRel = mean(|p - g| / g), SqRel = mean((p - g)^2 / g),
- RMSE = sqrt(mean((p - g)^2)), RMSE-log = sqrt(mean((ln p - ln g)^2)),
- delta < 1.25^k = fraction with max(p / g, g / p) < 1.25^k, k = 1, 2, 3.

An element is valid where ``min_depth < g < max_depth`` (defaults: g > 0, no upper cap) and
an optional mask is set; predictions are clamped to ``[min_depth, max_depth]`` first, as in
the usual KITTI / nuScenes depth protocol. Two reductions are kept, both as sums so that
merging accumulators across processes is exact up to float64 rounding:

- ``pooled``: every valid pixel (or ray) of the evaluation set weighs the same;
- ``per_image``: the metrics of each image (each row of an update), averaged over images
  with at least one valid pixel (the convention of monocular-depth benchmarks); images
  without any are counted in ``images_without_valid``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from renderlss.eval.metrics import ArrayLike, SumAccumulator, as_tensor

DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)  # the metric's definition, not a tuning knob
METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")

# Layout of the state vector: pooled sums, per-image sums, then the empty-image count.
_POOLED = slice(0, 8)  # count, |e|/g, e^2/g, e^2, (ln p - ln g)^2, delta hits x3
_PER_IMAGE = slice(8, 16)  # images, then the seven per-image metrics summed over images
_EMPTY = 16
_STATE_SIZE = 17


def depth_error_terms(pred: Tensor, target: Tensor) -> Tensor:
    """Per-element terms whose means give the metrics.

    Args:
        pred, target: [...] positive depths.
    Returns:
        [..., 7] float64: |e|/g, e^2/g, e^2, (ln p - ln g)^2 and the three delta hits (0/1),
        with ``e = p - g``.
    """
    pred, target = pred.double(), target.double()
    error = pred - target
    ratio = torch.maximum(pred / target, target / pred)
    deltas = [(ratio < threshold).double() for threshold in DELTA_THRESHOLDS]
    terms = [error.abs() / target, error**2 / target, error**2, (pred.log() - target.log()) ** 2]
    return torch.stack(terms + deltas, dim=-1)


def metrics_from_means(means: Tensor) -> Tensor:
    """[..., 7] means of ``depth_error_terms`` -> [..., 7] metrics in ``METRIC_NAMES`` order
    (the squared terms under a square root)."""
    return torch.cat([means[..., :2], means[..., 2:4].sqrt(), means[..., 4:]], dim=-1)


@dataclass(frozen=True)
class DepthMetricsResult:
    """Both reductions, as ``METRIC_NAMES`` -> value (NaN when nothing was valid)."""

    pooled: dict[str, float]
    per_image: dict[str, float]
    num_valid: int
    num_images: int
    images_without_valid: int

    def as_dict(self) -> dict[str, float]:
        """Flat scalars for logging: ``depth/<metric>`` (pooled), ``depth_per_image/<metric>``."""
        out = {f"depth/{k}": v for k, v in self.pooled.items()}
        out.update({f"depth_per_image/{k}": v for k, v in self.per_image.items()})
        return out

    def table(self) -> str:
        """Aligned plain-text table: one row per reduction, one column per metric."""
        header = ["", *METRIC_NAMES]
        rows = [
            header,
            ["pooled", *(f"{self.pooled[k]:.4f}" for k in METRIC_NAMES)],
            ["per image", *(f"{self.per_image[k]:.4f}" for k in METRIC_NAMES)],
        ]
        widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
        lines = [
            "  ".join([r[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(r[1:], widths[1:]))])
            for r in rows
        ]
        counts = (
            f"{self.num_valid} valid pixels in {self.num_images} images "
            f"({self.images_without_valid} images without a valid pixel)"
        )
        return "\n".join([*lines, counts])


class DepthMetrics(SumAccumulator):
    """Depth metrics accumulated as float64 sums (see the module docstring).

    Args:
        min_depth: targets at or below are invalid; predictions are clamped up to it.
        max_depth: targets at or above are invalid; predictions are clamped down to it.
        clamp_prediction: clamp predictions into ``[min_depth, max_depth]``.
        device: where the sums live (a CUDA device for nccl all-reduce).
    """

    def __init__(
        self,
        min_depth: float = 0.0,
        max_depth: float = math.inf,
        clamp_prediction: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        if not 0 <= min_depth < max_depth:
            raise ValueError(
                f"depth range needs 0 <= min_depth < max_depth, got [{min_depth}, {max_depth}]"
            )
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.clamp_prediction = clamp_prediction
        super().__init__(torch.zeros(_STATE_SIZE, dtype=torch.float64, device=device))

    def update(
        self,
        pred: ArrayLike,
        target: ArrayLike,
        mask: ArrayLike | None = None,
        where: str = "sample",
    ) -> None:
        """Add a batch of images (or ray sets).

        Args:
            pred: [B, ...] predicted depth (camera z, metres), B images.
            target: [B, ...] target depth; <= 0 (or outside the caps) marks no measurement.
            mask: [B, ...] optional, non-zero where the element is evaluated.
            where: names the sample in error messages.
        """
        device = self._sums.device
        pred, target = as_tensor(pred, device).double(), as_tensor(target, device).double()
        if pred.shape != target.shape or pred.dim() == 0:
            raise ValueError(
                f"{where}: predicted depth {tuple(pred.shape)} and target {tuple(target.shape)} "
                "must share a shape [B, ...]"
            )
        valid = (target > self.min_depth) & (target < self.max_depth)
        if mask is not None:
            mask = as_tensor(mask, device)
            if mask.shape != target.shape:
                raise ValueError(
                    f"{where}: mask {tuple(mask.shape)} != target {tuple(target.shape)}"
                )
            valid &= mask != 0
        if self.clamp_prediction:
            pred = pred.clamp(min=self.min_depth, max=self.max_depth)
        bad = valid & ~(torch.isfinite(pred) & (pred > 0))
        if bool(bad.any()):
            raise ValueError(
                f"{where}: predicted depth is not finite and positive at {int(bad.sum())} valid "
                "pixels (set min_depth > 0 to clamp predictions)"
            )
        valid = valid.reshape(len(target), -1)
        safe_pred = torch.where(valid, pred.reshape(valid.shape), 1.0)
        safe_target = torch.where(valid, target.reshape(valid.shape), 1.0)
        terms = depth_error_terms(safe_pred, safe_target) * valid[..., None]  # [B, N, 7]
        per_image_sums = terms.sum(dim=1)  # [B, 7]
        per_image_count = valid.sum(dim=1)  # [B]
        has_valid = per_image_count > 0
        image_means = per_image_sums[has_valid] / per_image_count[has_valid, None]
        update = torch.zeros_like(self._sums)
        update[_POOLED] = torch.cat([per_image_count.sum()[None], per_image_sums.sum(dim=0)])
        update[_PER_IMAGE] = torch.cat(
            [has_valid.sum()[None], metrics_from_means(image_means).sum(dim=0)]
        )
        update[_EMPTY] = (~has_valid).sum()
        self._sums += update

    def compute(self) -> DepthMetricsResult:
        sums = self._sums.cpu()
        pooled, per_image = sums[_POOLED], sums[_PER_IMAGE]
        pooled_values = metrics_from_means(pooled[1:] / pooled[0])  # 0 / 0 -> NaN
        per_image_values = per_image[1:] / per_image[0]
        return DepthMetricsResult(
            pooled=dict(zip(METRIC_NAMES, pooled_values.tolist())),
            per_image=dict(zip(METRIC_NAMES, per_image_values.tolist())),
            num_valid=int(pooled[0]),
            num_images=int(per_image[0] + sums[_EMPTY]),
            images_without_valid=int(sums[_EMPTY]),
        )


class SignedErrorMedian(SumAccumulator):
    """Median of the signed relative error ``(p - g) / g`` as a mergeable histogram.

    The errors are counted in ``bins`` equal bins over ``[-1, span]`` (values outside go to
    the end bins); the median is interpolated inside its bin, so it is exact to
    ``(1 + span) / bins``. A negative median means the prediction is biased near.

    Args:
        bins: histogram resolution.
        span: upper end of the histogram (an error of +span = span times too far).
        min_depth, max_depth: the target range counted, as :class:`DepthMetrics`.
        device: where the counts live.
    """

    def __init__(
        self,
        bins: int = 2000,
        span: float = 1.0,
        min_depth: float = 0.0,
        max_depth: float = math.inf,
        device: torch.device | str | None = None,
    ) -> None:
        self.bins, self.span = bins, span
        self.min_depth, self.max_depth = min_depth, max_depth
        super().__init__(torch.zeros(bins, dtype=torch.float64, device=device))

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add predictions and targets of any matching shape (targets outside the range,
        or <= 0, are skipped; predictions are clamped into the range like DepthMetrics)."""
        device = self._sums.device
        pred, target = as_tensor(pred, device).double(), as_tensor(target, device).double()
        valid = (target > self.min_depth) & (target < self.max_depth)
        pred = pred.clamp(min=self.min_depth, max=self.max_depth)
        error = ((pred - target) / target)[valid]
        position = (error + 1.0) / (1.0 + self.span) * self.bins
        index = position.floor().clamp(0, self.bins - 1).long()
        self._sums += torch.bincount(index, minlength=self.bins).double()

    def compute(self) -> float:
        """The median signed relative error (NaN when nothing was added)."""
        counts = self._sums.cpu()
        total = float(counts.sum())
        if total == 0:
            return math.nan
        cumulative = torch.cumsum(counts, 0)
        index = int(torch.searchsorted(cumulative, torch.tensor(total / 2, dtype=torch.float64)))
        before = float(cumulative[index - 1]) if index > 0 else 0.0
        inside = (total / 2 - before) / max(float(counts[index]), 1.0)
        width = (1.0 + self.span) / self.bins
        return -1.0 + (index + inside) * width
