"""The experiment config: the schema of a whole config file and its loader."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from renderlss.configuration import (
    ConfigError,
    apply_overrides,
    from_dict,
    read_config_file,
)
from renderlss.data.config import DataConfig
from renderlss.eval.config import EvalConfig
from renderlss.models.config import ModelConfig
from renderlss.ops.config import RenderConfig
from renderlss.train.config import TrainConfig

# The loss terms that read the Occ3D voxel labels.
OCC3D_LOSS_WEIGHTS = ("occ3d_weight", "occ3d_density_weight")


@dataclass
class ExperimentConfig:
    """Everything a run needs: ``data``, ``model``, ``render``, ``train`` and ``eval``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, where: str) -> None:
        loss = self.model.loss
        for name in OCC3D_LOSS_WEIGHTS:
            if getattr(loss, name) and not self.data.load_occ:
                raise ConfigError(f"model.loss.{name} > 0 needs Occ3D labels: data.load_occ=True")
        expected = self.data.classes.num_classes
        if self.data.classes.occ_class_names and self.model.head.num_classes != expected:
            raise ConfigError(
                f"model.head.num_classes is {self.model.head.num_classes} but data.classes "
                f"has {expected} classes including free"
            )


def training_data(config: ExperimentConfig) -> DataConfig:
    """The data section the training split is read with: Occ3D labels only when a loss
    term reads them, so that 2D-only training needs no label file that fits the grid."""
    loss = config.model.loss
    needed = any(getattr(loss, name) for name in OCC3D_LOSS_WEIGHTS)
    return replace(config.data, load_occ=config.data.load_occ and needed)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, merge, override and validate an experiment config file.

    Raises:
        ConfigError: unknown keys (with the nearest valid key), wrong types, bad values.
    """
    raw = apply_overrides(read_config_file(path), overrides or [])
    try:
        return from_dict(ExperimentConfig, raw)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from err
