"""Shared fixtures: a tiny synthetic nuScenes-format dataset generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from renderlss.synthetic import SyntheticConfig, generate_dataset, synthetic_config

# 2 scenes x 3 keyframes, small images and a sparse LiDAR: a few seconds to generate.
TINY_SYNTHETIC = dict(
    num_scenes=2, keyframes_per_scene=3, width=160, height=90, azimuth_steps=360, seed=7
)


@pytest.fixture(scope="session")
def synthetic_config_tiny() -> SyntheticConfig:
    """The config that ``synthetic_root`` was generated with."""
    return synthetic_config(**TINY_SYNTHETIC)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory, synthetic_config_tiny) -> Path:
    """Root of a tiny synthetic dataroot (version ``v1.0-synthetic``) with Occ3D labels
    under ``gts/`` and the oracle under ``oracle/``."""
    root = tmp_path_factory.mktemp("synthetic") / "dataroot"
    generate_dataset(root, synthetic_config_tiny, progress=False)
    return root
