"""Building the network of an experiment config."""

from __future__ import annotations

from renderlss.experiment import ExperimentConfig
from renderlss.models.occupancy_net import OccupancyNet


def build_model(config: ExperimentConfig) -> OccupancyNet:
    """The network of an experiment config (its grid, model and renderer sections)."""
    return OccupancyNet(config.model, config.data.grid, config.render)
