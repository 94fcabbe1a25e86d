"""Per-pixel ground truth of keyframe images: the synthetic world's oracle (the exact
camera-z depth and Occ3D class of every pixel, ``<dataroot>/oracle/<CAM>/<image stem>.npz``,
docs/synthetic.md) or a folder of the user's own maps in the same layout
(``eval.ground_truth_dir``, docs/formats.md): ``depth`` float camera z in metres (0 =
unknown) and, optionally, ``semantics`` uint8 in the config's class indices."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from renderlss.records.files import output_path

ORACLE_DIR = "oracle"
# Oracle semantics of a pixel that sees sky (its oracle depth is 0).
ORACLE_SKY = 255
# The maps a ground-truth file may hold.
FIELDS = ("depth", "semantics")


def oracle_path(dataroot: str | Path, camera: str, image_path: str) -> Path:
    """``<dataroot>/oracle/<CAM>/<image file stem>.npz`` of a keyframe image."""
    return output_path(Path(dataroot) / ORACLE_DIR, camera, image_path)


def has_oracle(dataroot: str | Path) -> bool:
    """True when the dataroot carries the synthetic oracle."""
    return (Path(dataroot) / ORACLE_DIR).is_dir()


def ground_truth_folder(dataroot: str | Path, ground_truth_dir: str | Path = "") -> Path | None:
    """The folder whose ``<CAM>/<image stem>.npz`` maps evaluation compares with: the given
    ``ground_truth_dir``, else the dataroot's oracle when it has one, else None.

    Raises:
        FileNotFoundError: ``ground_truth_dir`` given but not a folder.
    """
    if ground_truth_dir:
        folder = Path(ground_truth_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"eval.ground_truth_dir: {folder} is not a folder")
        return folder
    return Path(dataroot) / ORACLE_DIR if dataroot and has_oracle(dataroot) else None


def load_ground_truth(
    path: str | Path,
    where: str,
    size: tuple[int, int] | None = None,
    require_semantics: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ground truth of one image: depth [H, W] float32 camera z in metres (0 = unknown
    or sky) and semantics [H, W] uint8 (``ORACLE_SKY`` = none) or None when the file has
    none.

    Args:
        where: what the image belongs to (e.g. ``sample <token> CAM_FRONT``), named in errors.
        size: (H, W) the maps must have, when given.
        require_semantics: a file without ``semantics`` is an error.
    Raises:
        FileNotFoundError: no such file. ValueError: unreadable, a field missing, maps of
            another shape, depth not floating point, negative or not finite, semantics not
            uint8 — naming the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ground-truth file missing ({where})")
    wanted = ("depth", "semantics") if require_semantics else ("depth",)
    try:
        with np.load(path) as data:
            missing = [name for name in wanted if name not in data.files]
            maps = {name: np.asarray(data[name]) for name in data.files if name in FIELDS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: ground-truth file unreadable ({where}): {err!r}") from err
    if missing:
        raise ValueError(f"{path}: field {missing[0]!r} missing ({where})")
    for name, value in maps.items():
        if value.ndim != 2 or (size is not None and value.shape != tuple(size)):
            raise ValueError(
                f"{path}: field {name!r} has shape {value.shape}, expected {size or '[H, W]'} "
                f"({where})"
            )
    depth = maps["depth"]
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"{path}: field 'depth' must be float metres, got {depth.dtype} ({where})")
    if not np.all(np.isfinite(depth)) or np.any(depth < 0):
        raise ValueError(f"{path}: field 'depth' holds negative or non-finite values ({where})")
    semantics = maps.get("semantics")
    if semantics is not None and semantics.dtype != np.uint8:
        raise ValueError(
            f"{path}: field 'semantics' must be uint8, got {semantics.dtype} ({where})"
        )
    return depth.astype(np.float32), semantics


def load_oracle(
    path: str | Path, where: str, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic oracle of one image: :func:`load_ground_truth` with both maps required.

    Raises:
        FileNotFoundError: no such file (not a synthetic dataroot?). ValueError: see
            :func:`load_ground_truth`.
    """
    depth, semantics = load_ground_truth(path, where, size, require_semantics=True)
    return depth, semantics
