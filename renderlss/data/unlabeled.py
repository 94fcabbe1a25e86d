"""Which info records count as unlabeled in training, and what such a record gives up.

A record is unlabeled when its ``labeled`` field is False: the non-keyframe records of
``renderlss.data.unlabeled_infos`` always, and the keyframes of a seeded share of the
training scenes (``data.unlabeled.keyframe_fraction``), chosen by scene so that no scene
gives both labeled and unlabeled keyframes. An unlabeled record keeps its images, camera
geometry and LiDAR sweep; it loses its Occ3D label file and its lidarseg file.
"""

from __future__ import annotations

import numpy as np

LABELED_FIELD = "labeled"


def is_labeled(info: dict) -> bool:
    """Whether an info record may supply labels (records without the field are keyframes)."""
    return bool(info.get(LABELED_FIELD, True))


def strip_labels(info: dict) -> dict:
    """A copy of a record marked unlabeled, without its Occ3D and lidarseg files."""
    return dict(info, occ_path="", lidarseg_path="", **{LABELED_FIELD: False})


def unlabeled_scene_names(scene_names: list[str], fraction: float, seed: int) -> set[str]:
    """``round(fraction * n)`` of the distinct scene names, drawn by a seeded permutation of
    the sorted names (the same names for the same seed, whatever the input order)."""
    names = sorted(set(scene_names))
    count = round(fraction * len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i] for i in order[:count]}


def mark_unlabeled_keyframes(infos: list[dict], fraction: float, seed: int) -> list[dict]:
    """The records with the keyframes of :func:`unlabeled_scene_names` stripped of labels."""
    chosen = unlabeled_scene_names([info["scene_name"] for info in infos], fraction, seed)
    return [strip_labels(info) if info["scene_name"] in chosen else info for info in infos]
