"""Building the network of an experiment config, fresh or with a checkpoint's weights."""

from __future__ import annotations

from pathlib import Path

import torch

from renderlss.engine.experiment import ExperimentConfig
from renderlss.models.occupancy_net import OccupancyNet
from renderlss.train.checkpoint import CheckpointError, load_checkpoint

WEIGHT_FIELDS = ("model", "ema")


def build_model(config: ExperimentConfig) -> OccupancyNet:
    """The network of an experiment config (its grid, model and renderer sections)."""
    return OccupancyNet(config.model, config.data.grid, config.render)


def load_trained_model(
    config: ExperimentConfig, checkpoint: str | Path, weights: str, device: torch.device | str
) -> OccupancyNet:
    """``build_model(config)`` with the ``weights`` ("model" or "ema") of a checkpoint, in
    eval mode on ``device``.

    Raises:
        CheckpointError: naming the file and field when it is missing or does not fit.
    """
    if weights not in WEIGHT_FIELDS:
        raise ValueError(f"weights must be one of {WEIGHT_FIELDS}, got {weights!r}")
    saved = load_checkpoint(checkpoint)
    state = saved[weights]
    if state is None:
        raise CheckpointError(f"{checkpoint}: field {weights!r} is empty (trained without it)")
    if weights == "ema":
        state = state["module"]
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"{checkpoint}: field {weights!r} does not fit the model of the config: {err}"
        ) from err
    return model.to(device).eval()
