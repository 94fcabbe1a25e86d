"""A learned second stage of depth completion: an image-guided U-Net fills what neither the
accumulated sweeps nor the classical completion (``depth_completion``) reach — surfaces above
the LiDAR's top beam, far regions, holes wider than the closing kernels.

The network sees the camera image and a sparse depth image (normalised by ``max_depth``, with
its validity mask) and predicts, per pixel, a depth, the scale ``b`` of a Laplacian on its log
(≈ the expected relative error, trained by the Laplacian negative log-likelihood) and the
probability that the pixel sees a surface at all (trained by BCE on "the dense depth has a
value here"), so that sky stays empty. It works at half resolution inside (a stride-2 stem).

Training pairs come from the dense depth builder's own output on the training scenes, never
from the oracle: the target is the measured (accumulated) depth, the input a random subset
of the artifact's pixels with random rectangles cut out, so that the network learns to fill
large holes from the image and the depth around them.

Applied to a dense depth folder, the predictions fill only the pixels that are still empty,
and only where the network is sure enough (surface probability and scale thresholds); they
are written in the same file format with their own confidence level
(``FillConfig.level``, below the classical ``filled_confidence``), so a loss can weight them
or leave them out by level. See docs/dense_depth.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from renderlss.configuration import from_dict, to_dict
from renderlss.labels.artifacts import (
    MANIFEST_NAME,
    BuildSummary,
    pending_keyframes,
    write_or_check_manifest,
)
from renderlss.records.files import output_path, read_rgb_image
from renderlss.targets.dense_depth_files import (
    load_dense_depth,
    load_dense_semantics,
    save_dense_depth,
)
from renderlss.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

CHECKPOINT_KIND = "renderlss-depth-completion-net"
MIN_SCALE = 1e-3  # floor of the Laplacian scale (log-depth units), keeps the NLL bounded


@dataclass
class CompletionNetConfig:
    """Architecture and depth normalisation of :class:`CompletionNet` (in the checkpoint)."""

    # Depth normalisation and the largest depth the network can predict (metres).
    max_depth: float = 80.0
    # Inputs are average-pooled by this factor (depth over its valid pixels only) before
    # the network and its output upsampled back: the cost falls with its square.
    input_downscale: int = 2
    # Channels per U-Net level; level 0 works at half the pooled resolution, each next one
    # halves again.
    channels: tuple[int, ...] = (12, 24, 48, 64)

    def validate(self, where: str) -> None:
        if self.max_depth <= 0:
            raise ValueError(f"{where}.max_depth: must be > 0, got {self.max_depth}")
        if self.input_downscale < 1:
            raise ValueError(f"{where}.input_downscale: must be a positive integer")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"{where}.channels: positive channel counts expected")


@dataclass
class CompletionTrainingConfig:
    """Optimisation and input corruption of :func:`train_completion_net`."""

    steps: int = 300
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 50  # steps between checkpoint writes (and at the end)
    # Input = each artifact pixel kept with a probability drawn per image from this range ...
    keep_fraction: tuple[float, float] = (0.05, 0.6)
    # ... and this many rectangles zeroed, each side up to max_hole_fraction of the image's.
    holes: int = 4
    max_hole_fraction: float = 0.4
    # Loss targets: pixels of at least this stored confidence (1.0: measured only, so the
    # classical stage's foreground bleeding is not learned).
    target_min_confidence: float = 1.0
    surface_weight: float = 0.5  # weight of the surface BCE next to the depth NLL

    def validate(self, where: str) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError(f"{where}: steps >= 0, batch_size >= 1, checkpoint_every >= 1")
        low, high = self.keep_fraction
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"{where}.keep_fraction: need 0 <= low <= high <= 1")
        if self.holes < 0 or not 0.0 < self.max_hole_fraction <= 1.0:
            raise ValueError(f"{where}: holes >= 0 and max_hole_fraction in (0, 1]")
        if not 0.0 < self.target_min_confidence <= 1.0:
            raise ValueError(f"{where}.target_min_confidence: must lie in (0, 1]")


@dataclass
class FillConfig:
    """Which predictions are written, and with which stored confidence."""

    # Stored confidence of a learned pixel: the lowest level, below the classical
    # filled_confidence (0.5), stored as round(255 * level).
    level: float = 0.25
    min_surface_probability: float = 0.5  # below: sky (or unknown), left empty
    # Largest predicted Laplacian scale of log depth (≈ expected relative error) written.
    max_scale: float = 0.15

    def validate(self, where: str) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"{where}.level: must lie in (0, 1), got {self.level}")
        if not 0.0 <= self.min_surface_probability <= 1.0 or self.max_scale <= 0:
            raise ValueError(f"{where}: min_surface_probability in [0, 1], max_scale > 0")


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


@dataclass
class CompletionPrediction:
    """Per-pixel outputs of :class:`CompletionNet`, each [B, H, W] float32."""

    log_depth: torch.Tensor  # natural log of camera z in metres
    scale: torch.Tensor  # Laplacian scale of log_depth (> 0)
    surface_logit: torch.Tensor  # logit of "a surface with depth is seen here"

    @property
    def depth(self) -> torch.Tensor:
        return self.log_depth.exp()

    @property
    def surface_probability(self) -> torch.Tensor:
        return torch.sigmoid(self.surface_logit)


class CompletionNet(nn.Module):
    """Image-guided depth completion U-Net.

    Input: image [B, 3, H, W] in [0, 1] and sparse depth [B, H, W] in metres (0 = none), any
    H, W (pooled by ``input_downscale``, padded to a multiple of 2 ** len(channels), the
    output upsampled and cropped back to [B, H, W]).
    """

    def __init__(self, config: CompletionNetConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        # 5 input channels: RGB, depth / max_depth, validity.
        self.encoders = nn.ModuleList(
            _conv_block(c_in, c_out, 2) for c_in, c_out in zip((5, *channels), channels)
        )
        self.decoders = nn.ModuleList(
            _conv_block(c_deep + c_skip, c_skip, 1)
            for c_deep, c_skip in zip(channels[:0:-1], channels[-2::-1])
        )
        self.head = nn.Conv2d(channels[0], 3, 1)

    @property
    def stride(self) -> int:
        return 2 ** len(self.config.channels)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> CompletionPrediction:
        height, width = depth.shape[-2:]
        valid = (depth > 0).to(image.dtype)[:, None]
        normalised = (depth / self.config.max_depth).clamp(max=1.0)[:, None]
        factor = self.config.input_downscale
        if factor > 1:
            image = F.avg_pool2d(image, factor, ceil_mode=True)
            # Mean over the valid pixels of each block (0 where none), validity = any.
            valid_share = F.avg_pool2d(valid, factor, ceil_mode=True)
            normalised = F.avg_pool2d(normalised * valid, factor, ceil_mode=True)
            normalised = normalised / valid_share.clamp(min=1e-6)
            valid = (valid_share > 0).to(image.dtype)
        x = torch.cat([image, normalised, valid], dim=1)
        pooled_h, pooled_w = x.shape[-2:]
        x = F.pad(x, (0, -pooled_w % self.stride, 0, -pooled_h % self.stride))
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, skips[-2::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        x = self.head(x)[..., : (pooled_h + 1) // 2, : (pooled_w + 1) // 2]
        # The crop drops the padding (up to the overhang of a partial last block), so the
        # map is stretched over the image it was computed from.
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        # Depth = max_depth * sigmoid: bounded above by max_depth, log taken stably.
        log_depth = math.log(self.config.max_depth) + F.logsigmoid(x[:, 0])
        return CompletionPrediction(log_depth, F.softplus(x[:, 1]) + MIN_SCALE, x[:, 2])


def completion_loss(
    prediction: CompletionPrediction,
    target_depth: torch.Tensor,
    target_valid: torch.Tensor,
    surface: torch.Tensor,
    surface_weight: float,
) -> dict[str, torch.Tensor]:
    """Laplacian NLL of the log depth on the target pixels plus the surface BCE.

    Args:
        target_depth: [B, H, W] metres; target_valid: [B, H, W] bool, the pixels the NLL uses.
        surface: [B, H, W] bool, pixels where the dense depth has any value (BCE positives).
    Returns:
        ``{"nll", "surface", "total"}`` scalars; the NLL is 0 without a target pixel.
    """
    log_target = target_depth.clamp(min=MIN_SCALE).log()
    residual = (prediction.log_depth - log_target).abs()
    nll = residual / prediction.scale + prediction.scale.log()
    nll = nll[target_valid].mean() if target_valid.any() else nll.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(prediction.surface_logit, surface.float())
    return dict(nll=nll, surface=bce, total=nll + surface_weight * bce)


def corrupt_depth(
    depth: np.ndarray, rng: np.random.Generator, config: CompletionTrainingConfig
) -> np.ndarray:
    """[H, W] float32: a random subset of ``depth``'s pixels (the network's training input):
    each kept with a probability drawn from ``config.keep_fraction``, then ``config.holes``
    random rectangles zeroed."""
    keep = rng.random(depth.shape) < rng.uniform(*config.keep_fraction)
    out = np.where(keep, depth, 0.0).astype(np.float32)
    height, width = depth.shape
    for _ in range(config.holes):
        h = int(rng.integers(1, max(2, int(height * config.max_hole_fraction)) + 1))
        w = int(rng.integers(1, max(2, int(width * config.max_hole_fraction)) + 1))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        out[top : top + h, left : left + w] = 0.0
    return out


@dataclass
class CompletionSample:
    """One training image: RGB [H, W, 3] uint8 and its dense depth artifact [H, W] float32
    (depth in metres, stored confidence in [0, 1])."""

    image: np.ndarray
    depth: np.ndarray
    confidence: np.ndarray


def image_at_depth_size(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[H', W', 3] uint8: ``image`` resized (area) to a dense depth file's ``shape``."""
    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def image_and_artifact_paths(
    infos: list[dict], dataroot: str | Path, dense_dir: str | Path, cameras: list[str]
) -> Iterator[tuple[str, str, Path, Path]]:
    """``(camera, where, image path, dense depth file)`` of every keyframe camera image."""
    for info in infos:
        for cam in cameras:
            try:
                data_path = info["cams"][cam]["data_path"]
            except KeyError as err:
                raise ValueError(f"sample {info.get('token')}: field {err} missing") from err
            yield (
                cam,
                f"sample {info['token']} {cam}",
                Path(dataroot) / data_path,
                output_path(dense_dir, cam, data_path),
            )


def load_training_samples(
    infos: list[dict], dataroot: str | Path, dense_dir: str | Path, cameras: list[str]
) -> list[CompletionSample]:
    """Every keyframe camera image of ``infos`` with its dense depth file of ``dense_dir``.

    Raises:
        FileNotFoundError: no manifest in ``dense_dir`` (not a builder folder), or a missing
            image or dense depth file, naming the file and the sample.
    """
    if not (Path(dense_dir) / MANIFEST_NAME).is_file():
        raise FileNotFoundError(
            f"{dense_dir}: no {MANIFEST_NAME}; build it with tools/make_dense_depth.py"
        )
    samples = []
    for _, where, image_path, depth_path in image_and_artifact_paths(
        infos, dataroot, dense_dir, cameras
    ):
        if not depth_path.is_file():
            raise FileNotFoundError(f"{depth_path}: dense depth file missing ({where})")
        depth, confidence = load_dense_depth(depth_path)
        image = image_at_depth_size(read_rgb_image(image_path, where), depth.shape)
        samples.append(CompletionSample(image, depth, confidence))
    return samples


def image_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """[B, 3, H, W] float32 in [0, 1] from [H, W, 3] uint8 images."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def training_batch(
    samples: list[CompletionSample],
    step: int,
    config: CompletionTrainingConfig,
) -> tuple[torch.Tensor, ...]:
    """(image [B, 3, H, W], input depth [B, H, W], target depth [B, H, W], target valid
    [B, H, W] bool, surface [B, H, W] bool) of one step; drawn from ``(seed, step)`` alone,
    so a resumed run sees the same batches as an uninterrupted one."""
    rng = np.random.default_rng([config.seed, step])
    chosen = [samples[i] for i in rng.choice(len(samples), config.batch_size)]
    inputs = [corrupt_depth(s.depth, rng, config) for s in chosen]
    depth = torch.from_numpy(np.stack([s.depth for s in chosen]))
    confidence = torch.from_numpy(np.stack([s.confidence for s in chosen]))
    return (
        image_tensor([s.image for s in chosen]),
        torch.from_numpy(np.stack(inputs)),
        depth,
        (depth > 0) & (confidence >= config.target_min_confidence - 1e-6),
        depth > 0,
    )


def completion_checkpoint_config(
    net: CompletionNetConfig, training: CompletionTrainingConfig
) -> dict:
    """The configs a checkpoint records (and a resume must match)."""
    return dict(net=to_dict(net), training=to_dict(training))


def load_completion_net(path: str | Path) -> tuple[CompletionNet, dict]:
    """The network of a checkpoint of :func:`train_completion_net` (eval mode) and the
    checkpoint.

    Raises:
        CheckpointError: missing, unreadable, or not a completion network's checkpoint,
            naming the file.
    """
    checkpoint = load_checkpoint(path)
    if checkpoint["extra"].get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a depth completion network checkpoint")
    config = from_dict(CompletionNetConfig, checkpoint["meta"]["config"]["net"], "net")
    model = CompletionNet(config)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint


def train_completion_net(
    samples: list[CompletionSample],
    net_config: CompletionNetConfig,
    config: CompletionTrainingConfig,
    checkpoint_path: str | Path,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> CompletionNet:
    """Train (or resume from ``checkpoint_path``, when it exists, to ``config.steps``) and
    write the checkpoint every ``config.checkpoint_every`` steps and at the end.

    Raises:
        ValueError: no sample, or a checkpoint written with other configs.
    """
    if not samples:
        raise ValueError("no training image for the completion network")
    net_config.validate("net")
    config.validate("training")
    recorded = completion_checkpoint_config(net_config, config)
    torch.manual_seed(config.seed)
    model = CompletionNet(net_config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    step = 0
    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.is_file():
        checkpoint = load_checkpoint(checkpoint_path)
        saved = checkpoint["meta"]["config"]
        # The step count may grow on resume; everything else must match.
        if {**saved, "training": {**saved["training"], "steps": config.steps}} != recorded:
            raise ValueError(f"{checkpoint_path}: written with other configs; use another path")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step = int(checkpoint["meta"]["step"])

    def save() -> None:
        save_checkpoint(
            checkpoint_path,
            model=model,
            optimizer=optimizer,
            scheduler=None,
            scaler=None,
            step=step,
            epoch=0,
            config_dict=recorded,
            seed=config.seed,
            extra=dict(kind=CHECKPOINT_KIND),
        )

    model.train()
    while step < config.steps:
        image, sparse, target, target_valid, surface = training_batch(samples, step, config)
        losses = completion_loss(
            model(image, sparse), target, target_valid, surface, config.surface_weight
        )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        step += 1
        if log is not None:
            log(step, {k: float(v.detach()) for k, v in losses.items()})
        if step % config.checkpoint_every == 0 or step == config.steps:
            save()
    return model.eval()


@torch.no_grad()
def predict_depth(
    model: CompletionNet, image: np.ndarray, depth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions for one image: depth [H, W] metres, Laplacian scale [H, W] and surface
    probability [H, W] (float32), from RGB [H, W, 3] uint8 and sparse depth [H, W] metres."""
    prediction = model.eval()(
        image_tensor([image]), torch.from_numpy(depth[None].astype(np.float32))
    )
    return (
        prediction.depth[0].numpy(),
        prediction.scale[0].numpy(),
        prediction.surface_probability[0].numpy(),
    )


def fill_empty_pixels(
    depth: np.ndarray,
    confidence: np.ndarray,
    predicted: np.ndarray,
    accepted: np.ndarray,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``predicted`` depth into the pixels that are empty and ``accepted``.

    Args:
        depth, confidence: [H, W] float32 of a dense depth file (0 = none).
        predicted: [H, W] float32 metres; accepted: [H, W] bool.
        level: confidence of a filled pixel.
    Returns:
        depth and confidence [H, W] float32; every pixel that had depth is unchanged.
    """
    fill = (depth <= 0) & accepted & (predicted > 0)
    return (
        np.where(fill, predicted, depth).astype(np.float32),
        np.where(fill, level, confidence).astype(np.float32),
    )


def complete_image(
    model: CompletionNet,
    image: np.ndarray,
    depth: np.ndarray,
    confidence: np.ndarray,
    config: FillConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """One dense depth image completed by the network (see :func:`fill_empty_pixels`);
    only predictions with surface probability and scale within ``config`` are written."""
    predicted, scale, surface = predict_depth(model, image, depth)
    accepted = (surface >= config.min_surface_probability) & (scale <= config.max_scale)
    return fill_empty_pixels(depth, confidence, predicted, accepted, config.level)


@dataclass
class LearnedFillSummary(BuildSummary):
    """Outcome of :func:`apply_completion_net`."""

    filled_pixels: int = 0

    def details(self) -> list[str]:
        return [f"  learned pixels per written image: {self.filled_pixels / self.done:.0f}"]


def apply_completion_net(
    infos: list[dict],
    dataroot: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    checkpoint_path: str | Path,
    config: FillConfig,
    cameras: list[str],
    show_progress: bool = True,
) -> LearnedFillSummary:
    """Copy every dense depth file of ``dense_dir`` to ``out_dir`` with its empty pixels
    filled by the network (atomic writes, finished files skipped, ``semantics`` kept).
    The manifest is the source folder's with ``learned_completion`` added to its config.

    Raises:
        FileNotFoundError: no manifest in ``dense_dir``. CheckpointError: see
            :func:`load_completion_net`. ValueError: an output folder built otherwise.
    """
    config.validate("fill")
    source_manifest = Path(dense_dir) / MANIFEST_NAME
    if not source_manifest.is_file():
        raise FileNotFoundError(
            f"{dense_dir}: no {MANIFEST_NAME}; build it with tools/make_dense_depth.py"
        )
    model, checkpoint = load_completion_net(checkpoint_path)
    manifest = json.loads(source_manifest.read_text())
    manifest["config"]["learned_completion"] = dict(
        fill=to_dict(config),
        checkpoint_step=int(checkpoint["meta"]["step"]),
        **checkpoint["meta"]["config"],
    )
    out_dir = Path(out_dir)
    write_or_check_manifest(out_dir, manifest)
    summary = LearnedFillSummary()
    for index, info, pending in pending_keyframes(
        infos, (0, 1), out_dir, cameras, summary, "learned completion", show_progress
    ):
        try:
            for cam, where, image_path, depth_path in image_and_artifact_paths(
                [info], dataroot, dense_dir, pending
            ):
                depth, confidence = load_dense_depth(depth_path)
                semantics = load_dense_semantics(depth_path, depth.shape)
                image = image_at_depth_size(read_rgb_image(image_path, where), depth.shape)
                filled, filled_confidence = complete_image(model, image, depth, confidence, config)
                save_dense_depth(
                    output_path(out_dir, cam, info["cams"][cam]["data_path"]),
                    filled,
                    filled_confidence,
                    semantics,
                )
                summary.done += 1
                summary.filled_pixels += int(((depth <= 0) & (filled > 0)).sum())
        except (FileNotFoundError, ValueError) as err:
            summary.failed.append(f"sample {info.get('token', index)}: {err}")
    return summary
