"""mmdet3d>=1.1 info files (``{metainfo, data_list}``) as renderlss info records.

What such a file carries and the camera chain needs: image file names, ``cam2img``,
``cam2ego`` (or ``lidar2cam`` with ``lidar_points.lidar2ego``), the keyframe's
``ego2global``, the LiDAR file and its ``lidar2ego``.

What it lacks (:data:`MISSING`), and what the records hold instead:

- each camera's ego pose at its own timestamp: the keyframe's (LiDAR) ego pose is used, so a
  camera's rays are off by the ego motion between the two timestamps (nuScenes: up to about
  40 ms of driving, ~0.5 m at 50 km/h); records built from the dataroot by
  tools/create_data.py have the exact chain;
- ``scene_name``, ``prev`` / ``next``: no adjacent keyframes (``adjacent_keyframes`` must
  be 0) and no scene grouping;
- Occ3D labels: only where a record has ``occ_path`` (as BEVDet-Occ's converters add);
- image sizes (read from the images) and boxes (not used by renderlss).
"""

from __future__ import annotations

import numpy as np

from renderlss.geometry import compose, invert_pose, matrix_to_quaternion
from renderlss.records.infos import INFO_FORMAT, INFO_FORMAT_VERSION, normalise_bevdet_info

MISSING = (
    "each camera's ego2global at its own timestamp (the keyframe's is used), scene_name / "
    "prev / next (no adjacent keyframes), Occ3D labels unless a record has occ_path"
)
# mmdet3d's nuScenes data_prefix: folders, relative to the dataroot, that the file names of
# a data_list entry are in.
DEFAULT_DATA_PREFIX = dict(
    pts="samples/LIDAR_TOP",
    pts_semantic_mask="lidarseg/v1.0-trainval",
    CAM_FRONT="samples/CAM_FRONT",
    CAM_FRONT_RIGHT="samples/CAM_FRONT_RIGHT",
    CAM_FRONT_LEFT="samples/CAM_FRONT_LEFT",
    CAM_BACK="samples/CAM_BACK",
    CAM_BACK_LEFT="samples/CAM_BACK_LEFT",
    CAM_BACK_RIGHT="samples/CAM_BACK_RIGHT",
)


def is_mmdet3d_infos(data: object) -> bool:
    """Whether an unpickled info file is mmdet3d>=1.1's ``{metainfo, data_list}``."""
    return isinstance(data, dict) and "data_list" in data and "metainfo" in data


def _matrix(value: object, where: str, field: str) -> np.ndarray:
    """[4, 4] float64 pose of a data_list field (a nested list)."""
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"{where}: field {field!r} is {matrix.shape}, expected a 4x4 pose")
    return matrix


def _pose_fields(name: str, pose: np.ndarray) -> dict:
    """``<name>_rotation`` (w, x, y, z) and ``<name>_translation`` of a [4, 4] pose."""
    return {
        f"{name}_rotation": matrix_to_quaternion(pose[:3, :3]).tolist(),
        f"{name}_translation": pose[:3, 3].tolist(),
    }


def _joined(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix and name else name


def bevdet_style_record(entry: dict, data_prefix: dict[str, str], where: str) -> dict:
    """One data_list entry in the BEVDet layout that :func:`normalise_bevdet_info` reads.

    Args:
        entry: ``token``, ``timestamp`` (seconds), ``ego2global``, ``lidar_points``
            (``lidar_path``, ``lidar2ego``) and ``images`` ({camera: ``img_path``,
            ``cam2img``, ``cam2ego`` or ``lidar2cam``, ``timestamp``}).
        data_prefix: folder of each file kind (:data:`DEFAULT_DATA_PREFIX`).
    """
    token = entry.get("token", "")
    where = f"{where}: sample {token or '?'}"
    try:
        lidar = entry["lidar_points"]
        lidar2ego = _matrix(lidar["lidar2ego"], where, "lidar_points.lidar2ego")
        ego2global = _matrix(entry["ego2global"], where, "ego2global")
        cams = {}
        for name, image in entry["images"].items():
            cam_where = f"{where}, camera {name}"
            if "cam2ego" in image:
                cam2ego = _matrix(image["cam2ego"], cam_where, "cam2ego")
            else:
                lidar2cam = _matrix(image["lidar2cam"], cam_where, "lidar2cam")
                cam2ego = compose(lidar2ego, invert_pose(lidar2cam))
            cams[name] = dict(
                data_path=_joined(data_prefix.get(name, ""), image["img_path"]),
                sample_data_token=image.get("sample_data_token", ""),
                timestamp=int(round(float(image.get("timestamp", 0)) * 1e6)),
                cam_intrinsic=np.asarray(image["cam2img"], dtype=np.float64)[:3, :3].tolist(),
                **_pose_fields("sensor2ego", cam2ego),
                **_pose_fields("ego2global", ego2global),
            )
    except KeyError as err:
        raise ValueError(f"{where}: missing field {err.args[0]!r}") from err
    semantic_mask = entry.get("pts_semantic_mask_path", "")
    return dict(
        token=token,
        timestamp=int(round(float(entry.get("timestamp", 0)) * 1e6)),
        lidar_path=_joined(data_prefix.get("pts", ""), lidar["lidar_path"]),
        lidarseg_path=_joined(data_prefix.get("pts_semantic_mask", ""), semantic_mask),
        **_pose_fields("lidar2ego", lidar2ego),
        **_pose_fields("ego2global", ego2global),
        cams=cams,
        occ_path=entry.get("occ_path", ""),
    )


def records_from_mmdet3d(
    data: dict, source: str, data_prefix: dict[str, str] | None = None
) -> tuple[dict, list[dict]]:
    """``(metadata, records)`` in renderlss's layout from an unpickled mmdet3d info file.

    Args:
        data: ``{metainfo, data_list}``; source: the file name, for messages.
        data_prefix: folders of the file names (mmdet3d's ``data_prefix``), over
            :data:`DEFAULT_DATA_PREFIX`.
    """
    prefix = {**DEFAULT_DATA_PREFIX, **(data_prefix or {})}
    records = [
        normalise_bevdet_info(bevdet_style_record(entry, prefix, source), source)
        for entry in data["data_list"]
    ]
    metadata = dict(
        format=INFO_FORMAT,
        format_version=INFO_FORMAT_VERSION,
        version=str(data["metainfo"].get("version", "")),
        dataroot="",
        split="",
        cameras=list(records[0]["cams"]) if records else [],
        has_lidarseg=any(r["lidarseg_path"] for r in records),
        has_occ=any(r["occ_path"] for r in records),
        missing=MISSING,
    )
    return metadata, records
