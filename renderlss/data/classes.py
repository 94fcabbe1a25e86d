"""Class taxonomies as data: the lidarseg -> Occ3D learning map as a lookup table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from renderlss.configuration import ConfigError, from_dict, read_config_file


@dataclass
class ClassesConfig:
    """Class lists and the lidarseg learning map (see configs/_base_/occ3d_nuscenes.py)."""

    occ_class_names: list[str] = field(default_factory=list)
    ignore_index: int = 255
    lidarseg_category_names: list[str] = field(default_factory=list)
    learning_map: dict[str, str] = field(default_factory=dict)
    dynamic_class_names: list[str] = field(default_factory=list)

    def validate(self, where: str) -> None:
        unknown = set(self.learning_map.values()) - set(self.occ_class_names) - {"ignore"}
        if unknown:
            raise ValueError(f"{where}.learning_map: targets {sorted(unknown)} are not classes")
        unknown = set(self.dynamic_class_names) - set(self.occ_class_names)
        if unknown:
            raise ValueError(f"{where}.dynamic_class_names: {sorted(unknown)} are not classes")

    @property
    def free_index(self) -> int:
        """The class index of free space: the one after the semantic classes."""
        return len(self.occ_class_names)

    @property
    def num_classes(self) -> int:
        """Semantic classes including free."""
        return len(self.occ_class_names) + 1


def learning_map_table(classes: ClassesConfig) -> np.ndarray:
    """[256] uint8 lookup: lidarseg index -> Occ3D class index (ignore_index if unmapped)."""
    table = np.full(256, classes.ignore_index, dtype=np.uint8)
    for idx, name in enumerate(classes.lidarseg_category_names):
        target = classes.learning_map.get(name, "ignore")
        if target != "ignore":
            table[idx] = classes.occ_class_names.index(target)
    return table


def load_classes(config_path: str | Path) -> ClassesConfig:
    """The validated ``data.classes`` section of a config file (e.g. the Occ3D taxonomy in
    ``configs/_base_/occ3d_nuscenes.py``)."""
    section = read_config_file(config_path).get("data", {}).get("classes")
    if section is None:
        raise ConfigError(f"{config_path}: no data.classes section")
    return from_dict(ClassesConfig, section, "data.classes")
