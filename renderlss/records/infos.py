"""The info-record contract: one pickle per split listing every keyframe with the paths and
poses a model needs (format in docs/formats.md), read from our own files or from BEVDet-style
pickles that users already have, and the pose helpers every reader of a record shares.

Nothing here needs nuscenes-devkit: the Dataset, the label builders and the evaluation read
records without it (``renderlss.data.info_builder`` writes them from a dataroot).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from renderlss.geometry import (
    compose,
    corner_convention_intrinsic,
    invert_pose,
    pose_matrix,
    validated_intrinsic,
)
from renderlss.io import atomic_save_pickle

INFO_FORMAT = "renderlss-infos"
# 2: camera matrices in renderlss's pixel convention (1 stored the dataset's).
INFO_FORMAT_VERSION = 2
BOX_FIELDS = ("x", "y", "z", "l", "w", "h", "yaw")
# Folders of a nuScenes dataroot; a relative BEVDet path is cut to start at one of them.
DATAROOT_FOLDERS = ("samples", "sweeps", "lidarseg", "gts")


def info_pose(record: dict, name: str, where: str) -> np.ndarray:
    """[4, 4] float64 pose from ``<name>_rotation`` / ``<name>_translation`` of an info record."""
    try:
        return pose_matrix(
            record[f"{name}_rotation"], record[f"{name}_translation"], f"{where}, {name}"
        )
    except KeyError as err:
        raise ValueError(f"{where}: field {err.args[0]!r} missing") from err


def info_intrinsic(cam_info: dict, where: str) -> np.ndarray:
    """[3, 3] float64 validated camera matrix ``cam_intrinsic`` of an info camera record.

    Args:
        where: names the record (e.g. ``<info file>: sample <token>, camera <channel>``).
    Raises:
        ValueError: the field is missing or no valid camera matrix (see
            ``renderlss.geometry.intrinsics``), naming ``where`` and the field.
    """
    if "cam_intrinsic" not in cam_info:
        raise ValueError(f"{where}: field 'cam_intrinsic' missing")
    return validated_intrinsic(cam_info["cam_intrinsic"], f"{where}: field 'cam_intrinsic'")


def occ_label_path(scene_name: str, sample_token: str) -> str:
    """Occ3D label file of a keyframe, relative to the dataroot."""
    return f"gts/{scene_name}/{sample_token}/labels.npz"


def info_output_path(out_dir: str | Path, prefix: str, split: str) -> Path:
    """``<out_dir>/<prefix>_infos_<split>.pkl``."""
    return Path(out_dir) / f"{prefix}_infos_{split}.pkl"


def save_infos(path: str | Path, metadata: dict, infos: list[dict]) -> None:
    """Write an info pickle atomically."""
    atomic_save_pickle(path, dict(metadata=metadata, infos=infos))


def _dataroot_relative(path: str) -> str:
    """A BEVDet path made relative to the dataroot where it can be: absolute paths stay,
    ``./data/nuscenes/samples/...`` becomes ``samples/...``."""
    if not path or os.path.isabs(path):
        return path
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part in DATAROOT_FOLDERS:
            return str(Path(*parts[i:]))
    return path


def _bevdet_occ_path(path: str) -> str:
    """BEVDet-Occ stores the label folder; the labels are ``labels.npz`` inside it."""
    path = _dataroot_relative(path)
    if path and not path.endswith(".npz"):
        path = os.path.join(path, "labels.npz")
    return path


def _bevdet_sensor(record: dict, where: str) -> dict:
    try:
        return dict(
            data_path=_dataroot_relative(record["data_path"]),
            sample_data_token=record.get("sample_data_token", ""),
            timestamp=int(record.get("timestamp", 0)),
            sensor2ego_rotation=list(record["sensor2ego_rotation"]),
            sensor2ego_translation=list(record["sensor2ego_translation"]),
            ego2global_rotation=list(record["ego2global_rotation"]),
            ego2global_translation=list(record["ego2global_translation"]),
        )
    except KeyError as err:
        raise ValueError(f"{where}: missing field {err.args[0]!r}") from err


def normalise_bevdet_info(info: dict, where: str) -> dict:
    """One BEVDet info dict in our layout, its camera matrices (the devkit's pixel
    convention) shifted to ours (docs/formats.md). Boxes are not carried over: their frame and yaw
    convention differ between the mmdet3d versions that wrote them (rebuild from the
    dataroot when boxes are needed)."""
    token = info.get("token", "")
    where = f"{where}: sample {token or '?'}"
    try:
        cams = {
            name: dict(
                _bevdet_sensor(cam, f"{where}, camera {name}"),
                cam_intrinsic=corner_convention_intrinsic(
                    info_intrinsic(cam, f"{where}, camera {name}")
                ).tolist(),
                width=int(cam.get("width", 0)),
                height=int(cam.get("height", 0)),
            )
            for name, cam in info["cams"].items()
        }
        out = dict(
            token=info["token"],
            scene_token=info.get("scene_token", ""),
            scene_name=info.get("scene_name", ""),
            timestamp=int(info.get("timestamp", 0)),
            prev=info.get("prev", "") or "",
            next=info.get("next", "") or "",
            lidar_token=info.get("lidar_token", ""),
            lidar_path=_dataroot_relative(info.get("lidar_path", "")),
            lidarseg_path=_dataroot_relative(info.get("lidarseg_path", "")),
            lidar2ego_rotation=list(info["lidar2ego_rotation"]),
            lidar2ego_translation=list(info["lidar2ego_translation"]),
            ego2global_rotation=list(info["ego2global_rotation"]),
            ego2global_translation=list(info["ego2global_translation"]),
            sweeps=[
                _bevdet_sensor(s, f"{where}, sweep {i}")
                for i, s in enumerate(info.get("sweeps", []))
            ],
            cams=cams,
            gt_boxes=np.zeros((0, len(BOX_FIELDS)), dtype=np.float32),
            gt_velocity=np.zeros((0, 2), dtype=np.float32),
            gt_names=[],
            instance_tokens=[],
            num_lidar_pts=np.zeros(0, dtype=np.int64),
            occ_path=_bevdet_occ_path(info.get("occ_path", "")),
        )
    except KeyError as err:
        raise ValueError(f"{where}: missing field {err.args[0]!r}") from err
    return out


# What an info pickle may reference: plain containers and numpy arrays and scalars. Anything
# else (a class whose ``__reduce__`` runs code) is refused before it is called.
SAFE_PICKLE_GLOBALS = frozenset(
    [
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # numpy 1 and 2 name their array/scalar constructors differently.
        *(
            (f"numpy.{core}.multiarray", name)
            for core in ("core", "_core")
            for name in ("_reconstruct", "scalar")
        ),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    ]
)


class InfoUnpickler(pickle.Unpickler):
    """Unpickles only :data:`SAFE_PICKLE_GLOBALS`: info files from elsewhere cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: info pickles may hold only plain "
                "containers, numbers, strings and numpy arrays"
            )
        return super().find_class(module, name)


def load_infos(path: str | Path) -> tuple[dict, list[dict]]:
    """Read an info pickle (ours or BEVDet-style) as ``(metadata, infos)`` in our layout.

    The pickle is read with :class:`InfoUnpickler`: a global other than plain containers
    and numpy arrays (code a crafted pickle would run) is an error naming it.

    Raises:
        ValueError: unreadable file, a disallowed global, mmdet3d>=1.1
            ``{metainfo, data_list}`` pickles, or any other layout, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"info file {path} does not exist")
    try:
        with open(path, "rb") as handle:
            data = InfoUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise ValueError(f"{path}: not a readable info pickle ({err!r})") from err
    if isinstance(data, dict) and "data_list" in data and "metainfo" in data:
        raise ValueError(
            f"{path}: this is an mmdet3d>=1.1 info file ({{metainfo, data_list}}); it stores "
            "lidar2cam/cam2img per image instead of each camera's ego pose at its own time, "
            "which the camera-to-key-ego chain needs. Rebuild infos from the dataroot with "
            "tools/create_data.py."
        )
    if not (isinstance(data, dict) and isinstance(data.get("infos"), list)):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected dict(metadata=..., infos=[...]), got {keys}")
    metadata = data.get("metadata") or {}
    if metadata.get("format") == INFO_FORMAT:
        if metadata.get("format_version") != INFO_FORMAT_VERSION:
            raise ValueError(
                f"{path}: info format_version {metadata.get('format_version')!r}, this code "
                f"reads {INFO_FORMAT_VERSION}; rebuild with tools/create_data.py"
            )
        return metadata, data["infos"]
    infos = [normalise_bevdet_info(info, str(path)) for info in data["infos"]]
    cameras = list(infos[0]["cams"]) if infos else []
    return (
        dict(
            format=INFO_FORMAT,
            format_version=INFO_FORMAT_VERSION,
            version=metadata.get("version", ""),
            dataroot="",
            split="",
            cameras=cameras,
            has_lidarseg=any(info["lidarseg_path"] for info in infos),
            has_occ=any(info["occ_path"] for info in infos),
        ),
        infos,
    )


def camera_to_key_ego(cam_info: dict, key_info: dict) -> np.ndarray:
    """[4, 4] float64 camera -> key-ego pose: through the global frame, each sensor at its
    own timestamp (``inv(ego2global_key) @ ego2global_cam @ sensor2ego_cam``)."""
    what = f"sample {key_info['token']}"
    return compose(
        invert_pose(info_pose(key_info, "ego2global", what)),
        info_pose(cam_info, "ego2global", what),
        info_pose(cam_info, "sensor2ego", what),
    )
