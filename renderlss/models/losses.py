"""Loss terms of render-supervised occupancy training, as pure functions.

Every function takes per-element ``weight``s (a bool mask or float weights, 0 = excluded),
computes in float32 whatever the input dtype (safe under autocast), and returns a scalar
that stays connected to the graph (0 when nothing is valid). Ray losses take flattened rays
``[R, ...]``; the caller flattens its batch.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from renderlss.class_balance import exp_class_weights
from renderlss.models.config import DepthBinsConfig
from renderlss.models.depth_bins import one_hot_depth_target


def _weights_like(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Float32 weights broadcast to ``values`` (all ones when None)."""
    if weight is None:
        return torch.ones_like(values, dtype=torch.float32)
    if weight.shape != values.shape:
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match {tuple(values.shape)}")
    return weight.to(device=values.device, dtype=torch.float32)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(weight * values) / sum(weight), or a graph-connected 0 when the weights sum to 0."""
    total = weight.sum()
    masked = torch.where(weight > 0, values, torch.zeros_like(values))
    return (weight * masked).sum() / total.clamp(min=torch.finfo(torch.float32).tiny)


def silog_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    lam: float = 0.85,
    min_depth: float = 1e-3,
) -> torch.Tensor:
    """Scale-invariant log depth loss ``sqrt(E[g^2] - lam * E[g]^2)``, ``g = log pred - log
    target``, with E the weighted mean over rays whose target depth is > 0.

    Args:
        pred: [R] rendered depth (camera z, metres); clamped to ``min_depth`` before the log.
        target: [R] target depth; <= 0 marks no measurement.
        weight: [R] optional mask or weights.
        lam: 0 gives the RMS log error, 1 a fully scale-invariant loss.
    Returns:
        scalar.
    """
    w = _weights_like(pred, weight) * (target > 0)
    safe_target = torch.where(target > 0, target, torch.ones_like(target)).float()
    g = torch.log(pred.float().clamp(min=min_depth)) - torch.log(safe_target)
    mean_g = _weighted_mean(g, w)
    variance = _weighted_mean(g * g, w) - lam * mean_g * mean_g
    # The clamp keeps sqrt's gradient finite when every log error is equal and lam == 1.
    return torch.sqrt(variance.clamp(min=1e-12)) * (w.sum() > 0)


def class_weights_from_counts(
    counts: np.ndarray | torch.Tensor,
    mode: Literal["none", "exp", "inv_log"] = "exp",
    alpha: float = 0.005,
    max_weight: float = 10.0,
    offset: float = 1.02,
) -> torch.Tensor:
    """Per-class loss weights from class counts (voxels, pixels or points per class).

    - ``exp`` (RenderOcc's class balance): ``w_c = min(exp(alpha * (max_N / N_c - 1)),
      max_weight)``; the most frequent class gets 1, an absent class ``max_weight``.
    - ``inv_log`` (inverse log frequency): ``w_c = 1 / ln(offset + N_c / sum N)``, between
      ``1 / ln(offset + 1)`` and ``1 / ln(offset)``.
    - ``none``: all ones.

    Args:
        counts: [K] non-negative counts.
    Returns:
        [K] float32 weights.
    """
    n = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    if n.ndim != 1 or n.numel() == 0 or bool((n < 0).any()) or float(n.sum()) <= 0:
        raise ValueError(
            f"class counts must be a non-empty 1-D array >= 0 with a positive sum: {n}"
        )
    if mode == "none":
        weights = torch.ones_like(n)
    elif mode == "exp":
        weights = torch.from_numpy(exp_class_weights(n.numpy(), alpha, max_weight))
    elif mode == "inv_log":
        weights = 1.0 / torch.log(offset + n / n.sum())
    else:
        raise ValueError(f"class weighting mode must be none, exp or inv_log, got {mode!r}")
    return weights.float()


def semantic_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = 255,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """Class-weighted cross-entropy, normalised like PyTorch's weighted mean:
    ``sum_r w_r c_{y_r} CE_r / sum_r w_r c_{y_r}`` over rays whose label is not ignored.

    With ``focal_gamma`` > 0 each ``CE_r = -log p_t`` becomes the focal loss
    ``-(1 - p_t)^gamma log p_t`` (``p_t`` the softmax probability of the true class), so
    that well-classified rays count less; the class weights ``c`` play focal loss's
    ``alpha_c`` and the normalisation stays the same (gamma = 0 is the weighted CE).

    Args:
        logits: [R, K] (rendered semantics: sum of weights times logits along each ray).
        target: [R] int class indices, ``ignore_index`` for none.
        class_weights: [K] optional, from :func:`class_weights_from_counts`.
        weight: [R] optional mask or per-ray weights.
        focal_gamma: focusing exponent gamma >= 0.
    Returns:
        scalar.
    """
    num_classes = logits.shape[-1]
    valid = target != ignore_index
    if bool(((target < 0) | (target >= num_classes))[valid].any()):
        bad = target[valid & ((target < 0) | (target >= num_classes))][0].item()
        raise ValueError(f"semantic target has class {bad}, logits have {num_classes} classes")
    safe_target = torch.where(valid, target, torch.zeros_like(target)).long()
    ce = F.cross_entropy(logits.float(), safe_target, reduction="none")
    if focal_gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {focal_gamma}")
    if focal_gamma > 0:
        # 1 - p_t = 1 - exp(-CE), floored so that a gamma below 1 keeps a finite gradient.
        ce = (-torch.expm1(-ce)).clamp(min=1e-12) ** focal_gamma * ce
    w = _weights_like(ce, weight) * valid
    if class_weights is not None:
        if class_weights.shape != (num_classes,):
            raise ValueError(
                f"class_weights shape {tuple(class_weights.shape)}, expected ({num_classes},)"
            )
        w = w * class_weights.to(device=ce.device, dtype=torch.float32)[safe_target]
    return _weighted_mean(ce, w)


def occupancy_ce_loss(
    logits: torch.Tensor,
    semantics: torch.Tensor,
    mask: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = 255,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """3D cross-entropy on voxel labels (free is an ordinary class), over ``mask`` voxels;
    focal with ``focal_gamma`` > 0 (:func:`semantic_ce_loss`).

    Args:
        logits: [B, K, X, Y, Z].
        semantics: [B, X, Y, Z] int labels (Occ3D ``semantics``; ``ignore_index`` skipped).
        mask: [B, X, Y, Z] optional bool/uint8, e.g. Occ3D ``mask_camera``.
        class_weights: [K] optional.
    Returns:
        scalar.
    """
    flat_logits = logits.movedim(1, -1).reshape(-1, logits.shape[1])
    weight = None if mask is None else mask.reshape(-1).float()
    return semantic_ce_loss(
        flat_logits, semantics.reshape(-1), class_weights, weight, ignore_index, focal_gamma
    )


def distortion_loss(
    weights: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """mip-NeRF 360 distortion, per ray ``sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i``
    with midpoints ``m`` and lengths ``d`` of the intervals; mean over rays.

    Computed in O(S) with prefix sums: the intervals of a ray must be sorted along it.
    Distances are in the units of ``t`` (metres), so the value scales with them.

    Args:
        weights: [R, S] rendering weights.
        t_starts, t_ends: [R, S] interval bounds along each ray.
        weight: [R] optional mask or per-ray weights.
    Returns:
        scalar.
    """
    w = weights.float()
    mid = 0.5 * (t_starts + t_ends).float()
    length = (t_ends - t_starts).float()
    wm = w * mid
    # For sorted midpoints, sum_j w_j |m_i - m_j| over j < i is m_i W_<i - (wm)_<i.
    w_before = torch.cumsum(w, dim=-1) - w
    wm_before = torch.cumsum(wm, dim=-1) - wm
    cross = 2.0 * (w * (mid * w_before - wm_before)).sum(dim=-1)
    own = (w * w * length).sum(dim=-1) / 3.0
    per_ray = cross + own
    return _weighted_mean(per_ray, _weights_like(per_ray, weight))


def opacity_entropy_loss(
    opacity: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """Binary entropy ``-(o ln o + (1 - o) ln(1 - o))`` of each ray's opacity
    ``o = sum_i w_i = 1 - T_final``, pushing rays to be fully empty or fully blocked.

    Args:
        opacity: [R] in [0, 1].
        weight: [R] optional mask or weights.
        eps: keeps the logs finite at 0 and 1.
    Returns:
        scalar.
    """
    o = opacity.float().clamp(eps, 1.0 - eps)
    entropy = -(o * torch.log(o) + (1.0 - o) * torch.log1p(-o))
    return _weighted_mean(entropy, _weights_like(entropy, weight))


def downsample_min_depth(
    depth: torch.Tensor, stride: int, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Sparse depth map to feature cells: the nearest valid (> 0) depth in each cell.

    Cell ``(i, j)`` covers pixels ``[i s, (i + 1) s) x [j s, (j + 1) s)``; pixels past the
    image (when H or W is not a multiple of s) count as empty.

    Args:
        depth: [M, H, W], 0 (or less) where there is no measurement.
        stride: s, pixels per cell.
        size: (h, w) of the feature map; default ``(ceil(H / s), ceil(W / s))``.
    Returns:
        [M, h, w] min valid depth per cell, 0 where the cell has none.
    """
    height, width = depth.shape[-2:]
    h, w = size if size is not None else (math.ceil(height / stride), math.ceil(width / stride))
    if height > h * stride or width > w * stride:
        raise ValueError(
            f"depth map {height}x{width} is larger than feature map {h}x{w} covers at stride "
            f"{stride}"
        )
    inf = torch.tensor(float("inf"), dtype=depth.dtype, device=depth.device)
    masked = torch.where(depth > 0, depth, inf)
    masked = F.pad(masked, (0, w * stride - width, 0, h * stride - height), value=float("inf"))
    cell_min = -F.max_pool2d(-masked.unsqueeze(1), stride, stride).squeeze(1)
    return torch.where(torch.isinf(cell_min), torch.zeros_like(cell_min), cell_min)


def lss_depth_loss(
    depth_logits: torch.Tensor,
    depth: torch.Tensor,
    bins: DepthBinsConfig,
    stride: int,
    mode: Literal["bce", "ce"] = "bce",
    cell_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depth-distribution loss against one-hot bins of the min LiDAR depth per cell.

    Cells without a depth in ``[d_min, d_max)`` are excluded. ``bce``: binary cross-entropy
    of the softmax probabilities against the one-hot target, summed over bins (BEVDet);
    ``ce``: cross-entropy of the logits against the bin. Both averaged over valid cells,
    weighted by ``cell_weight`` when given (e.g. depth-edge weights,
    :mod:`renderlss.models.depth_edges`).

    Args:
        depth_logits: [M, D, h, w] from the depth net (M = B*N images).
        depth: [M, H, W] sparse depth at input-image resolution, 0 where none.
        bins: the depth bins (D = bins.num_bins).
        stride: input pixels per feature cell.
        cell_weight: [M, h, w] optional per-cell weights.
    Returns:
        scalar.
    """
    if depth_logits.shape[1] != bins.num_bins:
        raise ValueError(
            f"depth logits have {depth_logits.shape[1]} bins, the config {bins.num_bins}"
        )
    cell_depth = downsample_min_depth(depth, stride, tuple(depth_logits.shape[-2:]))
    target, valid = one_hot_depth_target(cell_depth.float(), bins)
    log_p = F.log_softmax(depth_logits.float(), dim=1).movedim(1, -1)  # [M, h, w, D]
    if mode == "bce":
        # Written out (not F.binary_cross_entropy) so it also runs inside autocast;
        # logs floored at -100 as PyTorch's BCE does.
        log_1mp = torch.log1p(-log_p.exp().clamp(max=1.0 - 1e-7))
        per_cell = -(target * log_p.clamp(min=-100.0) + (1.0 - target) * log_1mp).sum(-1)
    elif mode == "ce":
        per_cell = -(target * log_p).sum(-1)
    else:
        raise ValueError(f"lss depth loss mode must be 'bce' or 'ce', got {mode!r}")
    return _weighted_mean(per_cell, _weights_like(per_cell, cell_weight) * valid)


def target_distance(depth: torch.Tensor, z_per_t: torch.Tensor) -> torch.Tensor:
    """Camera-z depth -> distance along the unit ray: ``t = z / z_per_t``. [R] -> [R]."""
    return depth.float() / z_per_t.float().clamp(min=torch.finfo(torch.float32).tiny)


def termination_kernel_width(
    t_target: torch.Tensor, confidence: torch.Tensor, width: float, relative_width: float
) -> torch.Tensor:
    """Standard deviation [R] (metres along the ray) of the termination kernel of each ray:
    ``(width + relative_width * t) / confidence``, so a less certain target (dense or
    completed depth with confidence below 1) gets a wider kernel."""
    base = width + relative_width * t_target
    return base / confidence.float().clamp(min=0.05)


def ray_termination_loss(
    weights: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    t_target: torch.Tensor,
    kernel_width: torch.Tensor,
    weight: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Supervision of the ray-termination distribution itself (DS-NeRF's KL term).

    Per ray, the cross-entropy ``-sum_i k_i log(w_i + eps)`` of the rendering weights
    against a Gaussian termination kernel at the target distance, discretised on the ray's
    own intervals: ``k_i`` is the kernel's mass on interval ``[s_i, e_i]`` renormalised over
    the intervals (zero-length padding gets none). It is minimal when the weights equal the
    kernel, so mass in front of the surface (floaters, a volume that never carves) and
    behind it is penalised directly, not only through the mean depth. Mean over rays with a
    target.

    Args:
        weights, t_starts, t_ends: [R, S] rendering weights and interval bounds (metres along
            the ray).
        t_target: [R] target distance along the ray (``<= 0``: no target).
        kernel_width: [R] standard deviation of the kernel, metres along the ray.
        weight: [R] optional mask or per-ray weights.
        eps: keeps the log finite where a weight is 0.
    Returns:
        scalar.
    """
    sigma = kernel_width.float().clamp(min=1e-4).unsqueeze(-1)
    centre = t_target.float().unsqueeze(-1)
    normal_cdf = lambda t: 0.5 * (1.0 + torch.erf((t.float() - centre) / (sigma * math.sqrt(2))))  # noqa: E731
    mass = (normal_cdf(t_ends) - normal_cdf(t_starts)).clamp(min=0.0)  # [R, S]
    total = mass.sum(dim=-1, keepdim=True)
    kernel = mass / total.clamp(min=torch.finfo(torch.float32).tiny)
    per_ray = -(kernel * torch.log(weights.float() + eps)).sum(dim=-1)
    valid = (t_target > 0) & (total.squeeze(-1) > 1e-6)
    return _weighted_mean(per_ray, _weights_like(per_ray, weight) * valid)


def occupancy_probability(density: torch.Tensor, length: float) -> torch.Tensor:
    """Probability that a segment of ``length`` metres at a point stops a ray:
    ``1 - exp(-sigma * length)``, the renderer's own alpha at that step length."""
    return -torch.expm1(-density.float() * length)


def occupancy_bce_loss(
    density: torch.Tensor,
    occupied: torch.Tensor,
    length: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy of the occupancy probability of density values against
    free (0) / occupied (1) labels, written on the densities for numerical safety:
    ``-log p = -log(1 - exp(-sigma L))`` for occupied, ``-log(1 - p) = sigma L`` for free.

    Args:
        density: [P] sigma >= 0 per metre at P points (or voxels).
        occupied: [P] bool labels.
        length: L, metres: the step length that turns density into alpha.
        weight: [P] optional mask or weights.
    Returns:
        scalar.
    """
    optical = density.float().clamp(min=0.0) * length
    # -log(1 - exp(-x)), stable for small x (log of expm1) and for large x.
    occupied_nll = -torch.log(-torch.expm1(-optical.clamp(min=1e-6)))
    per_point = torch.where(occupied.bool(), occupied_nll, optical)
    return _weighted_mean(per_point, _weights_like(per_point, weight))


def emptiness_loss(density: torch.Tensor, length: float) -> torch.Tensor:
    """Mean occupancy probability ``1 - exp(-sigma L)`` over every voxel: a prior that space
    is empty unless a term says otherwise. Its gradient ``L exp(-sigma L) / N`` is largest for
    a faint haze and vanishes for an opaque voxel, so it clears density that no ray
    supervises without eroding the surfaces the other terms hold up.

    Args:
        density: [N] sigma >= 0 per metre (any shape; every element counts once).
        length: L, metres: the length that turns density into occupancy probability.
    Returns:
        scalar.
    """
    return -torch.expm1(-density.float().clamp(min=0.0) * length).mean()
