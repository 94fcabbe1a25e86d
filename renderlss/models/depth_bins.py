"""Depth bins of the LSS depth distribution and conversions between depth and bin index.

Bin ``i`` covers ``[edges[i], edges[i + 1])``. The continuous bin index maps ``edges[i]`` to
``i``, so ``floor(index)`` is the bin of a depth and bin ``i``'s centre is at index
``i + 0.5``. With ``D`` bins over ``[d_min, d_max]``:

- UD (uniform): ``edges[i] = d_min + (d_max - d_min) * i / D``.
- LID (linear-increasing, CaDDN): widths grow linearly with ``i``;
  ``edges[i] = d_min + (d_max - d_min) * i (i + 1) / (D (D + 1))``.
- SID (spacing-increasing, DORN): log-uniform edges;
  ``edges[i] = d_min * (d_max / d_min) ** (i / D)``.

Outside ``[d_min, d_max]`` UD and SID extend their formulas; LID's inverse has no real value
far below ``d_min`` and is clamped there. Use :func:`depth_to_bin`'s ``valid`` mask (or the
target functions) rather than reading meaning into indices outside ``[0, D]``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from renderlss.models.config import DepthBinsConfig


def _float_dtype(tensor: torch.Tensor) -> torch.dtype:
    return tensor.dtype if tensor.is_floating_point() else torch.float32


def index_to_depth(index: torch.Tensor, bins: DepthBinsConfig) -> torch.Tensor:
    """Depth at a continuous bin index (index ``i`` is the near edge of bin ``i``).

    Args:
        index: [...] float.
    Returns:
        depth: [...] metres of camera z.
    """
    span = bins.d_max - bins.d_min
    d = bins.num_bins
    if bins.mode == "UD":
        return bins.d_min + span * index / d
    if bins.mode == "LID":
        return bins.d_min + span * index * (index + 1.0) / (d * (d + 1.0))
    if bins.mode == "SID":
        return bins.d_min * torch.exp(math.log(bins.d_max / bins.d_min) * index / d)
    raise ValueError(f"unknown depth bin mode {bins.mode!r}; expected UD, LID or SID")


def depth_to_index(depth: torch.Tensor, bins: DepthBinsConfig) -> torch.Tensor:
    """Continuous bin index of a depth, the inverse of :func:`index_to_depth`.

    Args:
        depth: [...] metres of camera z.
    Returns:
        index: [...] float; ``floor`` gives the bin for depths in ``[d_min, d_max)``.
    """
    span = bins.d_max - bins.d_min
    d = bins.num_bins
    if bins.mode == "UD":
        return (depth - bins.d_min) * d / span
    if bins.mode == "LID":
        # Solve i (i + 1) = D (D + 1) (depth - d_min) / span for the root i >= -0.5.
        scaled = (depth - bins.d_min) * (d * (d + 1.0)) / span
        return -0.5 + 0.5 * torch.sqrt(torch.clamp(1.0 + 4.0 * scaled, min=0.0))
    if bins.mode == "SID":
        # Non-positive depths have no log; they map to -inf (below every bin).
        log_depth = torch.log(torch.clamp(depth, min=0.0))
        return (log_depth - math.log(bins.d_min)) * d / math.log(bins.d_max / bins.d_min)
    raise ValueError(f"unknown depth bin mode {bins.mode!r}; expected UD, LID or SID")


def bin_edges(
    bins: DepthBinsConfig, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """[D + 1] bin edges from ``d_min`` to ``d_max`` (increasing)."""
    index = torch.arange(bins.num_bins + 1, dtype=torch.float64, device=device)
    edges = index_to_depth(index, bins)
    # Pin the ends exactly: the closed forms reach them only up to rounding.
    edges[0], edges[-1] = bins.d_min, bins.d_max
    return edges.to(dtype)


def bin_centers(
    bins: DepthBinsConfig, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """[D] depth at each bin's centre index ``i + 0.5`` (the depth a lifted point gets)."""
    index = torch.arange(bins.num_bins, dtype=torch.float64, device=device) + 0.5
    return index_to_depth(index, bins).to(dtype)


def depth_to_bin(depth: torch.Tensor, bins: DepthBinsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin of each depth and whether the depth lies in ``[d_min, d_max)``.

    Args:
        depth: [...] metres; 0 or negative marks no measurement.
    Returns:
        bin: [...] int64 in ``[0, D)`` (clamped where invalid); valid: [...] bool.
    """
    valid = (depth >= bins.d_min) & (depth < bins.d_max)
    index = torch.floor(depth_to_index(depth, bins))
    index = torch.nan_to_num(index, nan=0.0, posinf=bins.num_bins - 1.0, neginf=0.0)
    # Rounding at an edge can put a depth just below d_max into bin D.
    return index.clamp(0, bins.num_bins - 1).long(), valid


def one_hot_depth_target(
    depth: torch.Tensor,
    bins: DepthBinsConfig,
    out_of_range: Literal["ignore", "clamp"] = "ignore",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot bin targets of depths.

    Args:
        depth: [...] metres; 0 or negative marks no measurement.
        out_of_range: ``"ignore"``: depths outside ``[d_min, d_max)`` get an all-zero row and
            ``valid = False``; ``"clamp"``: positive depths outside the range go to the first
            or last bin and stay valid.
    Returns:
        target: [..., D] float (one-hot or all zero); valid: [...] bool.
    """
    bin_index, valid = depth_to_bin(depth, bins)
    if out_of_range == "clamp":
        # depth_to_bin already puts out-of-range depths into the first or last bin.
        valid = depth > 0
    elif out_of_range != "ignore":
        raise ValueError(f"out_of_range must be 'ignore' or 'clamp', got {out_of_range!r}")
    target = F.one_hot(bin_index, bins.num_bins).to(_float_dtype(depth))
    return target * valid.unsqueeze(-1), valid


def soft_depth_target(
    depth: torch.Tensor,
    bins: DepthBinsConfig,
    out_of_range: Literal["ignore", "clamp"] = "ignore",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-hot targets: each depth split between the two nearest bin centres (in index space)
    so that the expected index equals the depth's continuous index.

    Depths between ``d_min`` and the first centre (or the last centre and ``d_max``) go wholly
    to the first (last) bin.

    Args:
        depth: [...] metres; 0 or negative marks no measurement.
        out_of_range: as in :func:`one_hot_depth_target`.
    Returns:
        target: [..., D] float summing to 1 where valid, 0 elsewhere; valid: [...] bool.
    """
    _, valid = depth_to_bin(depth, bins)
    if out_of_range == "clamp":
        valid = depth > 0
    elif out_of_range != "ignore":
        raise ValueError(f"out_of_range must be 'ignore' or 'clamp', got {out_of_range!r}")
    dtype = _float_dtype(depth)
    position = depth_to_index(depth.to(dtype), bins) - 0.5
    position = torch.nan_to_num(position, nan=0.0).clamp(0.0, bins.num_bins - 1.0)
    lower = torch.floor(position).long().clamp(max=bins.num_bins - 1)
    upper = (lower + 1).clamp(max=bins.num_bins - 1)
    frac = position - lower.to(dtype)
    target = F.one_hot(lower, bins.num_bins).to(dtype) * (1.0 - frac).unsqueeze(-1)
    target = target + F.one_hot(upper, bins.num_bins).to(dtype) * frac.unsqueeze(-1)
    return target * valid.unsqueeze(-1), valid
