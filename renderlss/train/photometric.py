"""Photometric jitter of normalised network inputs: the strong view of the teacher-student
loop.

Only pixel values change (brightness, contrast, saturation, as torchvision's ColorJitter
defines them, in that order), never geometry, so the jittered images keep the rays, the
augmentation matrices and the LiDAR pixels of the view they came from.
"""

from __future__ import annotations

import torch

# ITU-R 601 luma weights, the grey of torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


def _factors(count: int, strength: float, like: torch.Tensor) -> torch.Tensor:
    """[count, 1, 1, 1] factors drawn uniformly from [1 - strength, 1 + strength]."""
    draws = torch.rand(count, 1, 1, 1)
    return (1.0 + strength * (2.0 * draws - 1.0)).to(like)


def photometric_jitter(
    images: torch.Tensor,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    brightness: float,
    contrast: float,
    saturation: float,
) -> torch.Tensor:
    """Each image brightened, contrasted and saturated by its own random factors.

    Pixels are taken back to 0..255 RGB (``x * std + mean``), scaled, clamped to 0..255 after
    every change and normalised again. Factors come from the global torch generator (saved
    and restored with checkpoints): one draw of each factor per image.

    Args:
        images: [M, 3, H, W] normalised RGB images.
        mean, std: the per-channel normalisation of the dataset (``data.image_mean/std``).
        brightness, contrast, saturation: strengths s in [0, 1); 0 leaves that change out.
    Returns:
        [M, 3, H, W] jittered images, normalised like the input.
    """
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device)[:, None, None]
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device)[:, None, None]
    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device)[:, None, None]
    rgb = images * std_t + mean_t
    count = images.shape[0]
    if brightness:
        rgb = (rgb * _factors(count, brightness, rgb)).clamp(0.0, 255.0)
    if contrast:
        grey_mean = (rgb * luma).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        rgb = (grey_mean + _factors(count, contrast, rgb) * (rgb - grey_mean)).clamp(0.0, 255.0)
    if saturation:
        grey = (rgb * luma).sum(dim=1, keepdim=True)
        rgb = (grey + _factors(count, saturation, rgb) * (rgb - grey)).clamp(0.0, 255.0)
    return (rgb - mean_t) / std_t
