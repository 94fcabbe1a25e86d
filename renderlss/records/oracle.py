"""The synthetic world's oracle: the exact camera-z depth and Occ3D class of every keyframe
pixel, ``<dataroot>/oracle/<CAM>/<image stem>.npz`` (docs/synthetic.md)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from renderlss.records.files import output_path

ORACLE_DIR = "oracle"
# Oracle semantics of a pixel that sees sky (its oracle depth is 0).
ORACLE_SKY = 255


def oracle_path(dataroot: str | Path, camera: str, image_path: str) -> Path:
    """``<dataroot>/oracle/<CAM>/<image file stem>.npz`` of a keyframe image."""
    return output_path(Path(dataroot) / ORACLE_DIR, camera, image_path)


def has_oracle(dataroot: str | Path) -> bool:
    """True when the dataroot carries the synthetic oracle."""
    return (Path(dataroot) / ORACLE_DIR).is_dir()


def load_oracle(
    path: str | Path, where: str, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The oracle of one image: depth [H, W] float32 camera z (0 = sky) and semantics [H, W]
    uint8 (``ORACLE_SKY`` = sky).

    Args:
        where: what the image belongs to (e.g. ``sample <token>``), named in errors.
        size: (H, W) the maps must have, when given.
    Raises:
        FileNotFoundError: no such file (not a synthetic dataroot?). ValueError: unreadable,
            a field missing, or maps of another size, naming the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: oracle file missing ({where}; not a synthetic dataroot?)")
    try:
        with np.load(path) as data:
            maps = {name: np.asarray(data[name]) for name in ("depth", "semantics")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: oracle file unreadable ({where}): {err!r}") from err
    for name, value in maps.items():
        if value.ndim != 2 or (size is not None and value.shape != tuple(size)):
            raise ValueError(
                f"{path}: field {name!r} has shape {value.shape}, expected {size or '[H, W]'} "
                f"({where})"
            )
    return maps["depth"].astype(np.float32), maps["semantics"]
