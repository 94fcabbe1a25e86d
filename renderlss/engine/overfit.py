"""The overfit check: can the network learn one keyframe's 3D scene from 2D supervision alone?

One keyframe, its exact per-pixel depth and class as ray targets (the synthetic oracle
source), only the losses the config turns on (a 2D config: no Occ3D labels), many steps on
that keyframe alone. If the rendered depth of the keyframe's own pixels does not get close
to the truth, or the density does not carve the keyframe's camera-visible voxels, something
in lifting, density parametrisation, sampling or the losses prevents it: no amount of data
would fix that. ``tools/overfit_check.py`` runs it; a cut-down version is a test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from renderlss.data.collate import collate
from renderlss.data.dataset import OccDataset
from renderlss.engine.build import build_model
from renderlss.engine.experiment import ExperimentConfig
from renderlss.eval.occupancy_depth import first_occupied_depth
from renderlss.models.objective import loss_terms
from renderlss.models.occupancy_net import OccupancyNet


@dataclass(frozen=True)
class KeyframeScores:
    """How well a model renders and carves the keyframe it is fitted to."""

    abs_rel: float  # mean |rendered - true| / true depth over the scored rays
    median_signed: float  # median (rendered - true) / true: < 0 is biased near
    delta1: float  # share of rays with max(r / t, t / r) < 1.25
    opacity: float  # mean rendered opacity
    geometry_iou: float  # occupied-vs-free IoU (%) on mask_camera voxels, best threshold
    threshold: float  # the density threshold of that IoU
    # median |first occupied voxel's depth - rendered depth| / rendered depth along the
    # scored rays, occupancy at that threshold: does the volume render what it predicts?
    occupancy_agreement: float


def keyframe_batch(config: ExperimentConfig, index: int) -> dict:
    """The eval-mode sample ``index`` of the training split with every target ray of its
    sources (``data.targets.num_rays`` large enough to hold them), as a batch of one."""
    dataset = OccDataset(config.data.train_infos, config.data, train=False)
    if not 0 <= index < len(dataset):
        raise IndexError(f"keyframe index {index} outside the {len(dataset)} training samples")
    if "voxel_semantics" not in dataset[index]:
        raise ValueError("the overfit check scores geometry on Occ3D labels: data.load_occ=True")
    return collate([dataset[index]])


def ray_subset(batch: dict, rays: torch.Tensor) -> dict:
    """The batch with only the target rays ``rays`` [R'] (indices into its R rays)."""
    targets = batch["targets"]
    count = targets["depth"].shape[1]
    subset = {
        name: value[:, rays] if value.dim() >= 2 and value.shape[1] == count else value
        for name, value in targets.items()
    }
    return {**batch, "targets": subset}


@torch.no_grad()
def keyframe_scores(
    model: OccupancyNet, batch: dict, free_index: int, thresholds: Sequence[float], stride: int
) -> KeyframeScores:
    """Rendered depth against every ``stride``-th target ray and geometry IoU of the
    occupancy density on the camera-visible voxels, at the best of ``thresholds``."""
    was_training = model.training
    model.eval()
    predictions = model.volume(batch)
    targets = batch["targets"]
    has_depth = torch.nonzero(targets["depth"][0] > 0).squeeze(1)[::stride]
    rendered = model.render(predictions, ray_subset(batch, has_depth)["targets"])
    pred, true = rendered.depth[0], targets["depth"][0, has_depth]
    relative = (pred - true) / true
    ratio = torch.maximum(pred / true, true / pred.clamp(min=1e-6))
    occupied = batch["voxel_semantics"][0] != free_index
    mask = batch["mask_camera"][0].bool()
    density = predictions["occupancy_density"][0, 0]
    ious = []
    for threshold in thresholds:
        predicted = density > threshold
        union = ((predicted | occupied) & mask).sum()
        ious.append(float((predicted & occupied & mask).sum()) / max(float(union), 1.0))
    best = max(range(len(ious)), key=ious.__getitem__)
    first = first_occupied_depth(
        density > thresholds[best], ray_subset(batch, has_depth)["targets"], model.grid
    )
    agreement = ((first - pred).abs() / pred.clamp(min=1e-6)).median()
    model.train(was_training)
    return KeyframeScores(
        abs_rel=float(relative.abs().mean()),
        median_signed=float(relative.median()),
        delta1=float((ratio < 1.25).float().mean()),
        opacity=float(rendered.opacity.mean()),
        geometry_iou=100.0 * ious[best],
        threshold=float(thresholds[best]),
        occupancy_agreement=float(agreement),
    )


def overfit_keyframe(
    config: ExperimentConfig,
    index: int,
    steps: int,
    rays_per_step: int,
    thresholds: Sequence[float],
    score_every: int,
    score_stride: int = 4,
    log: Callable[[str], None] = print,
) -> tuple[OccupancyNet, list[dict]]:
    """Fit a fresh model to one keyframe with the config's losses and optimiser settings
    (AdamW at ``train.lr``, ``train.weight_decay``, ``train.grad_clip``; no schedule).

    Each step draws ``rays_per_step`` of the keyframe's target rays at random.
    Returns:
        the model and one record per scoring (``step`` and the :class:`KeyframeScores`
        fields), every ``score_every`` steps and after the last.
    """
    torch.manual_seed(config.train.seed)
    batch = keyframe_batch(config, index)
    model = build_model(config)
    tc = config.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    count = batch["targets"]["depth"].shape[1]
    generator = torch.Generator().manual_seed(tc.seed)
    classes = config.data.classes
    history = []
    for step in range(steps + 1):
        if step % score_every == 0 or step == steps:
            scores = keyframe_scores(model, batch, classes.free_index, thresholds, score_stride)
            history.append(dict(step=step, **asdict(scores)))
            log(
                f"[{step}/{steps}] AbsRel {scores.abs_rel:.3f} median signed "
                f"{scores.median_signed:+.3f} delta1 {scores.delta1:.3f} geometry IoU "
                f"{scores.geometry_iou:.1f} (threshold {scores.threshold:g}), rendered vs "
                f"occupied depth {scores.occupancy_agreement:.3f}"
            )
        if step == steps:
            break
        model.train()
        chosen = torch.randperm(count, generator=generator)[:rays_per_step]
        sub = ray_subset(batch, chosen)
        predictions, rendered = model(sub)
        terms = loss_terms(
            predictions, rendered, sub, config.model, {}, classes.ignore_index, config.data.grid
        )
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
    return model, history
