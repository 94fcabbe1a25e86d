"""Which scenes go into which info file.

The official nuScenes versions use the devkit's official scene lists; any other version (a
custom or synthetic dataroot) is split deterministically by scene, so that no scene
contributes frames to both training and validation.
"""

from __future__ import annotations

import math

from nuscenes.utils.splits import create_splits_scenes

# nuScenes version -> {our split name: devkit split name}.
OFFICIAL_SPLITS: dict[str, dict[str, str]] = {
    "v1.0-trainval": {"train": "train", "val": "val"},
    "v1.0-mini": {"mini_train": "mini_train", "mini_val": "mini_val"},
    "v1.0-test": {"test": "test"},
}


def fraction_split(scene_names: list[str], val_fraction: float) -> dict[str, list[str]]:
    """Deterministic by-scene train/val split.

    Scenes are sorted by name and ``round(val_fraction * n)`` of them, spread evenly over the
    sorted list, go to ``val``; with ``val_fraction > 0`` and at least two scenes, ``val``
    gets at least one scene and ``train`` keeps at least one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    names = sorted(set(scene_names))
    n = len(names)
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    # Evenly spaced picks: the middle of each of n_val equal blocks of the sorted list.
    val_idx = {math.floor((k + 0.5) * n / n_val) for k in range(n_val)} if n_val else set()
    return {
        "train": [s for i, s in enumerate(names) if i not in val_idx],
        "val": [s for i, s in enumerate(names) if i in val_idx],
    }


def split_scenes(
    version: str, scene_names: list[str], val_fraction: float = 0.25
) -> tuple[dict[str, list[str]], list[str]]:
    """Assign the scenes of a dataroot to splits.

    Args:
        version: nuScenes version string (``v1.0-mini``, ``v1.0-trainval``, ...).
        scene_names: names of the scenes present in the dataroot.
        val_fraction: share of validation scenes for versions without an official split.
    Returns:
        splits: split name -> scene names (sorted; only scenes present in the dataroot);
        unassigned: present scenes that no official split lists (always empty for other versions).
    """
    if version not in OFFICIAL_SPLITS:
        return fraction_split(scene_names, val_fraction), []
    official = create_splits_scenes()
    present = set(scene_names)
    splits = {
        ours: sorted(present & set(official[theirs]))
        for ours, theirs in OFFICIAL_SPLITS[version].items()
    }
    assigned = set().union(*splits.values())
    return splits, sorted(present - assigned)
