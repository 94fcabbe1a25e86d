"""Depth-guided (PDF) frustum sampling: each cell's lift depths drawn from its depth distribution.

The regular LSS lift puts a cell's context at every bin centre, weighted by the bin's
probability, so most points carry almost no mass in empty space and a surface is resolved
no finer than its bin. Here, as in NeRF's hierarchical sampling, the distribution ``p`` over
the D bins is read as a piecewise-constant density in depth (bin ``k`` holds mass ``p_k``
spread uniformly over ``[edges[k], edges[k + 1])``) and each cell draws its own ``S`` depths
by the inverse of that density's CDF at ``S`` values of ``u`` in ``[0, 1)``: evenly spaced
``u_s = (s + 0.5) / S`` in evaluation (deterministic), stratified ``u_s = (s + xi_s) / S``,
``xi_s ~ U[0, 1)``, in training. The samples gather where the mass is: ``n_k ~ S p_k`` of
them fall in bin ``k``, spread across its interval.

Weights. Sample ``s`` in bin ``k(s)`` carries ``w_s = p_k / (S sg(p_k))``, ``sg`` the stop
gradient. Its value is exactly ``1 / S``: the samples follow the density, so equal masses
make ``sum_s w_s delta(z - z_s)`` an unbiased estimate of it, and a cell still lifts total
mass 1 as with bins. Its gradient gives the depth distribution the splat's gradient:
``d/dp_k sum_s w_s g_s = (1 / (S p_k)) sum_{s in k} g_s``, about the mean upstream gradient
``g`` over bin ``k``'s samples since ``n_k ~ S p_k``, which is what the regular lift gives
(``g`` at the bin centre). Equal weights without the ratio would leave the depth net no
gradient from the rendering losses (the positions reach the volume through a floor).
The depths themselves are drawn without gradient; a bin that draws no sample gets no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Smallest bin mass a weight's denominator may hold: a bin that drew a sample has positive
# mass, but a rounding-level one must not turn its weight into inf.
_MIN_MASS = 1e-12


def sample_fractions(
    shape: tuple[int, ...],
    num_samples: int,
    stratified: bool,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The ``u`` values of the inverse CDF, increasing along the last dim.

    Args:
        shape: leading dims [...] (one set of samples each).
        num_samples: S.
        stratified: one uniform draw in each of the S equal strata of [0, 1); otherwise the
            strata midpoints.
    Returns:
        [..., S] float32 in [0, 1).
    """
    index = torch.arange(num_samples, dtype=torch.float32, device=device)
    if not stratified:
        return ((index + 0.5) / num_samples).expand(*shape, num_samples)
    jitter = torch.rand(
        (*shape, num_samples), dtype=torch.float32, device=device, generator=generator
    )
    # (s + jitter) / S can round up to 1 in float32 for the last stratum; keep it below.
    return torch.clamp((index + jitter) / num_samples, max=1.0 - 2.0**-24)


def inverse_cdf(probabilities: Tensor, edges: Tensor, fractions: Tensor) -> tuple[Tensor, Tensor]:
    """Depths at CDF fractions of piecewise-constant densities over depth bins.

    Args:
        probabilities: [..., D] bin masses (non-negative; a total other than 1 is
            normalised).
        edges: [D + 1] increasing bin edges (metres).
        fractions: [..., S] values in [0, 1).
    Returns:
        depths: [..., S] float32 in ``[edges[k], edges[k + 1]]``; bins: [..., S] int64, the
        bin ``k`` of each depth (one with positive mass).
    """
    masses = probabilities.float()
    upper = torch.cumsum(masses, dim=-1)  # [..., D] CDF at each bin's far edge
    total = upper[..., -1:]
    # Scale u to the total rather than the CDF to 1: then u < total picks a bin with mass.
    target = fractions * total
    bins = torch.searchsorted(upper.contiguous(), target.contiguous(), right=True)
    bins = bins.clamp(max=masses.shape[-1] - 1)
    below = torch.gather(upper - masses, -1, bins)  # CDF at the bin's near edge
    mass = torch.gather(masses, -1, bins)
    within = ((target - below) / mass.clamp(min=_MIN_MASS)).clamp(0.0, 1.0)
    edges = edges.to(device=masses.device, dtype=torch.float32)
    near, width = edges[bins], (edges[1:] - edges[:-1])[bins]
    return near + within * width, bins


def importance_weights(probabilities: Tensor, bins: Tensor) -> Tensor:
    """Lift weights ``p_k / (S sg(p_k))`` of samples drawn from ``probabilities``.

    Args:
        probabilities: [..., D] the distribution the samples were drawn from (its gradient
            is kept).
        bins: [..., S] int64, each sample's bin.
    Returns:
        [..., S] float32: value 1 / S where the bin has mass (0 where it has none).
    """
    masses = probabilities.float()
    drawn = torch.gather(masses, -1, bins)
    # p / p first: exactly 1 in floating point, so the value is exactly 1 / S.
    return drawn / drawn.detach().clamp(min=_MIN_MASS) / bins.shape[-1]


def pdf_samples(
    probabilities: Tensor,
    edges: Tensor,
    num_samples: int,
    stratified: bool,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Each cell's lift depths and weights drawn from its depth distribution.

    Args:
        probabilities: [M, D, h, w] per-cell distribution over the D bins (sums to 1).
        edges: [D + 1] bin edges (``renderlss.models.depth_bins.bin_edges``).
        num_samples: S samples per cell.
        stratified: stratified ``u`` (training) instead of evenly spaced (evaluation).
    Returns:
        depths: [M, S, h, w] camera z, increasing along S, without gradient;
        weights: [M, S, h, w] float32, value 1 / S, gradient to ``probabilities``.
    """
    if probabilities.dim() != 4 or edges.shape != (probabilities.shape[1] + 1,):
        raise ValueError(
            f"pdf_samples: probabilities must be [M, D, h, w] with edges [D + 1], got "
            f"{tuple(probabilities.shape)} and {tuple(edges.shape)}"
        )
    if num_samples < 1:
        raise ValueError(f"pdf_samples: num_samples must be >= 1, got {num_samples}")
    per_cell = probabilities.movedim(1, -1)  # [M, h, w, D]
    fractions = sample_fractions(
        tuple(per_cell.shape[:-1]), num_samples, stratified, per_cell.device, generator
    )
    with torch.no_grad():
        depths, bins = inverse_cdf(per_cell.detach(), edges, fractions)
    weights = importance_weights(per_cell, bins)
    return depths.movedim(-1, 1), weights.movedim(-1, 1)
