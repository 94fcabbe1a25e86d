"""The renderlss experiment config a plugin component is built from."""

from __future__ import annotations

from renderlss.configuration import ConfigError, apply_overrides, from_dict
from renderlss.engine.experiment import ExperimentConfig, load_experiment


def experiment_config(
    experiment: str | dict | None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """The validated experiment config of a plugin component's ``experiment`` argument.

    Args:
        experiment: a renderlss config file (``configs/synthetic_demo.py``), a dict of its
            sections (``dict(data=..., model=..., render=...)``), or None for the defaults.
        overrides: ``a.b=value`` strings applied on top, as ``--cfg-options`` of tools/.
    Raises:
        ConfigError: unknown keys (naming the nearest valid one), wrong types or values.
    """
    if isinstance(experiment, str):
        return load_experiment(experiment, list(overrides))
    raw = apply_overrides(dict(experiment or {}), list(overrides))
    try:
        return from_dict(ExperimentConfig, raw)
    except ValueError as err:
        raise ConfigError(f"plugin experiment config: {err}") from err
