"""Dense multi-frame LiDAR depth for every keyframe camera image.

Per keyframe: accumulate the LiDAR sweeps of a window around it (objects riding on their
interpolated boxes, see ``depth_accumulation``); per camera: place the objects at the
camera's own timestamp, project with the camera's own ego pose, keep the nearest point per
pixel, drop points hidden behind nearer surfaces (``visibility``) and optionally fill small
holes (``depth_completion``). One file per image, ``<out>/<CAM>/<image stem>.npz`` with
``depth`` (float16 [H, W], camera z in metres, 0 = none) and ``confidence`` (uint8 [H, W],
255 = measured, less = filled, 0 = none), plus ``<out>/manifest.json``. See
docs/dense_depth.md.

With ``transfer_labels`` the unlabelled sweeps get classes from the labelled keyframe sweeps
(``label_transfer``) and each file also holds ``semantics`` (uint8 [H, W], the Occ3D class
of every measured pixel's point, the ignore index where none or below the transfer's
minimum confidence).

The pixel-sized parameters (visibility window, completion kernels) are stated at
:data:`REFERENCE_WIDTH` output pixels and, unless given in pixels, scaled with each image's
output width: the gaps between accumulated points grow with the resolution, so a fixed
window stops seeing across them (at 800 px the 6 px window doubles the AbsRel).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from renderlss.configuration import from_dict, to_dict
from renderlss.geometry import nearest_per_pixel, project_to_image, transform_points
from renderlss.labels.artifacts import BuildSummary, pending_keyframes, write_or_check_manifest
from renderlss.labels.box_motion import BoxTrack, scene_box_tracks
from renderlss.labels.depth_accumulation import (
    AccumulatedCloud,
    LidarFrame,
    accumulate_frames,
    global_to_camera,
    scene_lidar_timeline,
    window_frames,
)
from renderlss.labels.depth_completion import complete_depth
from renderlss.labels.label_transfer import (
    UNKNOWN,
    LabelledCloud,
    LabelTransferConfig,
    PointClasses,
    accumulate_labelled_frames,
    transfer_labels,
)
from renderlss.labels.visibility import (
    LidarVisibilityConfig,
    points_depth_image,
    remove_hidden_points,
)
from renderlss.records.files import output_path
from renderlss.targets.dense_depth_files import save_dense_depth
from renderlss.targets.lidar import DEFAULT_EGO_BOX, DEFAULT_MIN_DEPTH

DENSE_DEPTH_FORMAT = "renderlss-dense-depth"
DENSE_DEPTH_VERSION = 1

# Output width (pixels) at which the pixel-sized defaults below were tuned (400x225).
REFERENCE_WIDTH = 400
VISIBILITY_RADIUS_AT_REFERENCE = 6
COMPLETION_KERNELS_AT_REFERENCE = (5,)


@dataclass
class DenseDepthConfig:
    """Parameters of the dense depth builder (all recorded in the manifest)."""

    # LiDAR sweeps taken before and after the keyframe's own sweep (each direction);
    # 0 = the keyframe sweep alone. nuScenes and the synthetic world record 10 per keyframe.
    window_sweeps: int = 10
    # Move points of annotated objects with their boxes (False: everything is static).
    dynamic: bool = True
    box_margin: float = 0.2  # metres added to a box's sides and top, taken off its bottom
    # How far (seconds) outside its annotated keyframes an instance's box still exists,
    # moved on by its velocity; one nuScenes keyframe interval.
    max_box_extrapolation_s: float = 0.5
    # Ego body in the ego frame (x0, y0, z0, x1, y1, z1); returns inside it are removed.
    ego_box: tuple[float, float, float, float, float, float] = DEFAULT_EGO_BOX
    min_depth: float = DEFAULT_MIN_DEPTH  # camera-z metres; nearer points dropped
    # Hidden-point removal (see renderlss.labels.visibility).
    visibility: bool = True
    # Window half size in output pixels; None: VISIBILITY_RADIUS_AT_REFERENCE scaled by
    # output width / REFERENCE_WIDTH (see resolved_visibility_radius).
    visibility_radius: int | None = None
    visibility_margin: float = 0.1  # relative depth gap that counts as nearer
    visibility_min_sectors: int = 4  # quadrants that must hold a nearer point
    # The LiDAR-side test on top: points of other sweeps hidden in the keyframe sweep's
    # range image are dropped before projection (off by default; docs/dense_depth.md).
    lidar_visibility: LidarVisibilityConfig = field(default_factory=LidarVisibilityConfig)
    # Hole filling (see renderlss.labels.depth_completion).
    complete: bool = False
    # Kernel diameters in output pixels; None: COMPLETION_KERNELS_AT_REFERENCE scaled with
    # the output width (see resolved_completion_kernels).
    completion_kernels: tuple[int, ...] | None = None
    filled_confidence: float = 0.5
    # Output resolution = image size / downscale (an integer dividing width and height).
    downscale: int = 1
    # Classes for the unlabelled sweeps by KNN from the labelled ones (label_transfer), and
    # a per-pixel ``semantics`` map in every file.
    transfer_labels: bool = False
    label_transfer: LabelTransferConfig = field(default_factory=LabelTransferConfig)

    def validate(self, where: str) -> None:
        if self.window_sweeps < 0:
            raise ValueError(f"{where}.window_sweeps: must be >= 0, got {self.window_sweeps}")
        if self.box_margin < 0 or self.max_box_extrapolation_s < 0 or self.min_depth < 0:
            raise ValueError(
                f"{where}: box_margin, max_box_extrapolation_s and min_depth must be >= 0"
            )
        if self.visibility_radius is not None and self.visibility_radius < 1:
            raise ValueError(f"{where}.visibility_radius: must be >= 1 (or None: scaled)")
        if not 1 <= self.visibility_min_sectors <= 4:
            raise ValueError(f"{where}.visibility_min_sectors: must be 1..4")
        if not 0.0 <= self.visibility_margin < 1.0:
            raise ValueError(f"{where}.visibility_margin: must lie in [0, 1)")
        if any(k < 3 or k % 2 == 0 for k in self.completion_kernels or ()):
            raise ValueError(f"{where}.completion_kernels: odd sizes >= 3 expected")
        if not 0.0 < self.filled_confidence < 1.0:
            raise ValueError(f"{where}.filled_confidence: must lie in (0, 1)")
        if self.downscale < 1:
            raise ValueError(f"{where}.downscale: must be a positive integer")
        self.label_transfer.validate(f"{where}.label_transfer")
        self.lidar_visibility.validate(f"{where}.lidar_visibility")
        if self.lidar_visibility.enabled and self.transfer_labels:
            # The labelled accumulation merges sweep by sweep and has no reference sweep.
            raise ValueError(
                f"{where}: lidar_visibility and transfer_labels cannot be combined yet"
            )


def dense_depth_config(**values) -> DenseDepthConfig:
    """A validated :class:`DenseDepthConfig` from keyword values."""
    return from_dict(DenseDepthConfig, values, "dense_depth")


def pixels_at_width(pixels_at_reference: float, width: int) -> int:
    """A length of ``pixels_at_reference`` at :data:`REFERENCE_WIDTH` scaled to an image
    ``width`` pixels wide, rounded half up, at least 1."""
    return max(1, int(np.floor(pixels_at_reference * width / REFERENCE_WIDTH + 0.5)))


def resolved_visibility_radius(config: DenseDepthConfig, width: int) -> int:
    """The hidden-point window half size (pixels) for an output ``width`` pixels wide: the
    configured one, or :data:`VISIBILITY_RADIUS_AT_REFERENCE` scaled (6 / 12 / 24 px at
    400 / 800 / 1600 px)."""
    if config.visibility_radius is not None:
        return config.visibility_radius
    return pixels_at_width(VISIBILITY_RADIUS_AT_REFERENCE, width)


def resolved_completion_kernels(config: DenseDepthConfig, width: int) -> tuple[int, ...]:
    """The completion kernel diameters (odd pixels) for an output ``width`` pixels wide: the
    configured ones, or :data:`COMPLETION_KERNELS_AT_REFERENCE` with their half size
    ``(k - 1) / 2`` scaled, so they stay odd (5 / 9 / 17 px at 400 / 800 / 1600 px)."""
    if config.completion_kernels is not None:
        return config.completion_kernels
    return tuple(
        2 * pixels_at_width((k - 1) / 2, width) + 1 for k in COMPLETION_KERNELS_AT_REFERENCE
    )


@dataclass
class CameraStats:
    """What happened to the points of one camera image."""

    measured_pixels: int = 0  # pixels with a point after the z-buffer
    hidden_removed: int = 0  # of those, removed as hidden behind nearer points
    filled_pixels: int = 0  # pixels filled by completion
    dropped_object_points: int = 0  # object points whose instance is absent at camera time


@dataclass
class SceneContext:
    """What the keyframes of one scene share: the LiDAR timeline, the box tracks and the
    lidarseg file of each labelled sweep (by its LiDAR ``data_path``)."""

    timeline: list[LidarFrame]
    tracks: dict[str, BoxTrack]
    lidarseg_paths: dict[str, str] = field(default_factory=dict)


def scene_context(scene_infos: list[dict]) -> SceneContext:
    """Timeline, box tracks and lidarseg files from all keyframe infos of one scene."""
    return SceneContext(
        scene_lidar_timeline(scene_infos),
        scene_box_tracks(scene_infos),
        {i["lidar_path"]: i["lidarseg_path"] for i in scene_infos if i.get("lidarseg_path")},
    )


def stored_size(cam_info: dict, downscale: int, where: str) -> tuple[int, int]:
    """(H, W) of the stored depth image: the camera image's size / ``downscale``."""
    width, height = int(cam_info["width"]), int(cam_info["height"])
    if width % downscale or height % downscale:
        raise ValueError(
            f"{where}: image {width}x{height} is not divisible by downscale {downscale}"
        )
    return height // downscale, width // downscale


def scaled_intrinsic(intrinsic: np.ndarray, downscale: int) -> np.ndarray:
    """[3, 3] camera matrix of the image resized by 1 / downscale (exact in the pixel
    convention of ``renderlss.geometry.camera``)."""
    scale = np.diag([1.0 / downscale, 1.0 / downscale, 1.0])
    return scale @ np.asarray(intrinsic, dtype=np.float64)


def accumulate_keyframe(
    info: dict, context: SceneContext, dataroot: str | Path, config: DenseDepthConfig
) -> AccumulatedCloud:
    """The accumulated cloud of the sweeps around one keyframe."""
    frames = window_frames(context.timeline, int(info["timestamp"]), config.window_sweeps)
    return accumulate_frames(
        frames,
        dataroot,
        config.ego_box,
        context.tracks if config.dynamic else None,
        config.box_margin,
        config.max_box_extrapolation_s,
        lidar_visibility=config.lidar_visibility,
        reference_timestamp=int(info["timestamp"]),
    )


def labelled_keyframe_cloud(
    info: dict,
    context: SceneContext,
    dataroot: str | Path,
    config: DenseDepthConfig,
    point_classes: PointClasses,
) -> LabelledCloud:
    """The accumulated cloud around one keyframe with lidarseg classes on its labelled sweeps
    and transferred classes on the others.

    Raises:
        ValueError: no sweep of the window is labelled (no lidarseg), naming the sample.
    """
    frames = window_frames(context.timeline, int(info["timestamp"]), config.window_sweeps)
    if not any(f.data_path in context.lidarseg_paths for f in frames):
        raise ValueError(
            f"sample {info['token']}: no labelled sweep (lidarseg_path) in its window to "
            "transfer labels from"
        )
    cloud, static_classes, object_classes = accumulate_labelled_frames(
        frames,
        context.lidarseg_paths,
        dataroot,
        point_classes,
        config.ego_box,
        context.tracks if config.dynamic else None,
        config.box_margin,
        config.max_box_extrapolation_s,
    )
    return transfer_labels(
        cloud, static_classes, object_classes, config.label_transfer, point_classes.num_classes
    )


def camera_class_image(
    labelled: LabelledCloud,
    tracks: dict[str, BoxTrack],
    cam_info: dict,
    config: DenseDepthConfig,
    measured: np.ndarray,
    ignore_index: int,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Class of the nearest point in each ``measured`` pixel of one camera image.

    Args:
        measured: [H', W'] bool, the pixels whose measured depth the builder kept (the
            z-buffer's nearest point after hidden-point removal, as :func:`camera_dense_depth`).
    Returns:
        classes [H', W'] uint8 (``ignore_index`` where not measured, unknown or below
        ``config.label_transfer.min_confidence``) and their confidence [H', W'] float32.
    """
    timestamp = int(cam_info["timestamp"])
    points, _ = labelled.cloud.place_at(tracks, timestamp, config.max_box_extrapolation_s)
    classes, confidence = labelled.placed_classes(tracks, timestamp, config.max_box_extrapolation_s)
    height, width = measured.shape
    uv, depth = project_to_image(
        transform_points(global_to_camera(cam_info, where), points),
        scaled_intrinsic(cam_info["cam_intrinsic"], config.downscale),
    )
    near = np.flatnonzero(depth > config.min_depth)
    # The same z-buffer as points_depth_image: one nearest point per pixel.
    nearest = near[nearest_per_pixel(uv[near], depth[near], width, height)]
    rows, cols = (
        np.floor(uv[nearest, 1]).astype(np.int64),
        np.floor(uv[nearest, 0]).astype(np.int64),
    )
    class_image = np.full((height, width), ignore_index, dtype=np.uint8)
    confidence_image = np.zeros((height, width), dtype=np.float32)
    usable = (classes[nearest] != UNKNOWN) & (
        confidence[nearest] >= config.label_transfer.min_confidence
    )
    usable &= measured[rows, cols]
    class_image[rows[usable], cols[usable]] = classes[nearest[usable]]
    confidence_image[rows[usable], cols[usable]] = confidence[nearest[usable]]
    return class_image, confidence_image


def camera_dense_depth(
    cloud: AccumulatedCloud,
    tracks: dict[str, BoxTrack],
    cam_info: dict,
    config: DenseDepthConfig,
    where: str,
) -> tuple[np.ndarray, np.ndarray, CameraStats]:
    """Dense depth of one camera image from an accumulated cloud.

    Returns:
        depth [H', W'] float32 (0 = none), confidence [H', W'] float32 in [0, 1], and the
        statistics; H', W' = image size / ``config.downscale``.
    """
    points, dropped = cloud.place_at(
        tracks, int(cam_info["timestamp"]), config.max_box_extrapolation_s
    )
    points_cam = transform_points(global_to_camera(cam_info, where), points)
    height, width = stored_size(cam_info, config.downscale, where)
    intrinsic = scaled_intrinsic(cam_info["cam_intrinsic"], config.downscale)
    depth = points_depth_image(points_cam, intrinsic, width, height, config.min_depth)
    stats = CameraStats(measured_pixels=int((depth > 0).sum()), dropped_object_points=dropped)
    if config.visibility:
        depth, stats.hidden_removed = remove_hidden_points(
            depth,
            resolved_visibility_radius(config, width),
            config.visibility_margin,
            config.visibility_min_sectors,
        )
    if config.complete:
        depth, confidence = complete_depth(
            depth, resolved_completion_kernels(config, width), config.filled_confidence
        )
        stats.filled_pixels = int(((confidence > 0) & (confidence < 1)).sum())
    else:
        confidence = (depth > 0).astype(np.float32)
    return depth, confidence, stats


def keyframe_dense_targets(
    info: dict,
    context: SceneContext,
    dataroot: str | Path,
    config: DenseDepthConfig,
    cameras: list[str],
    point_classes: PointClasses | None = None,
) -> Iterator[
    tuple[str, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None, CameraStats]
]:
    """``(camera, depth, confidence, classes, stats)`` for each requested camera of one
    keyframe; ``classes`` is ``(class image, its confidence)`` of
    :func:`camera_class_image` with ``config.transfer_labels`` (which needs
    ``point_classes``), else None."""
    if config.transfer_labels:
        if point_classes is None:
            raise ValueError("dense_depth.transfer_labels: the class taxonomy is needed")
        labelled = labelled_keyframe_cloud(info, context, dataroot, config, point_classes)
        cloud = labelled.cloud
    else:
        cloud = accumulate_keyframe(info, context, dataroot, config)
    for cam in cameras:
        where = f"sample {info['token']} {cam}"
        if cam not in info["cams"]:
            raise ValueError(f"sample {info['token']}: no camera {cam} in its info")
        cam_info = info["cams"][cam]
        depth, confidence, stats = camera_dense_depth(
            cloud, context.tracks, cam_info, config, where
        )
        classes = None
        if config.transfer_labels:
            classes = camera_class_image(
                labelled,
                context.tracks,
                cam_info,
                config,
                confidence >= 1.0,
                point_classes.ignore_index,
                where,
            )
        yield cam, depth, confidence, classes, stats


def keyframe_dense_depth(
    info: dict,
    context: SceneContext,
    dataroot: str | Path,
    config: DenseDepthConfig,
    cameras: list[str],
) -> Iterator[tuple[str, np.ndarray, np.ndarray, CameraStats]]:
    """``(camera, depth, confidence, stats)`` for each requested camera of one keyframe."""
    plain = dataclasses.replace(config, transfer_labels=False)
    for cam, depth, confidence, _, stats in keyframe_dense_targets(
        info, context, dataroot, plain, cameras
    ):
        yield cam, depth, confidence, stats


def manifest(
    config: DenseDepthConfig, cameras: list[str], point_classes: PointClasses | None = None
) -> dict:
    """The parameters that decide the output files. Without ``transfer_labels`` the
    transfer's fields are left out, and without the LiDAR-side test its fields, so folders
    built before they existed still resume."""
    recorded = to_dict(config)
    if not config.lidar_visibility.enabled:
        del recorded["lidar_visibility"]
    if config.transfer_labels and point_classes is not None:
        recorded["learning_table"] = point_classes.learning_table.tolist()
    else:
        del recorded["transfer_labels"], recorded["label_transfer"]
    return dict(
        format=DENSE_DEPTH_FORMAT,
        version=DENSE_DEPTH_VERSION,
        cameras=cameras,
        # The width at which unset pixel parameters are stated decides them too.
        reference_width=REFERENCE_WIDTH,
        config=recorded,
    )


@dataclass
class DenseDepthSummary(BuildSummary):
    """Outcome of :func:`build_dense_depth` (one failure reason per keyframe)."""

    failure_unit: str = "keyframes"
    stats: Counter = field(default_factory=Counter)  # CameraStats summed over written images

    def details(self) -> list[str]:
        per_image = ", ".join(f"{k} {v / self.done:.0f}" for k, v in sorted(self.stats.items()))
        return [f"  per written image: {per_image}"]


def group_by_scene(infos: list[dict]) -> dict[str, list[dict]]:
    """Infos per scene token (scene name for infos without one)."""
    scenes: dict[str, list[dict]] = {}
    for info in infos:
        scenes.setdefault(info.get("scene_token") or info.get("scene_name", ""), []).append(info)
    return scenes


def build_dense_depth(
    infos: list[dict],
    dataroot: str | Path,
    out_dir: str | Path,
    config: DenseDepthConfig,
    cameras: list[str],
    shard: tuple[int, int] = (0, 1),
    show_progress: bool = True,
    point_classes: PointClasses | None = None,
) -> DenseDepthSummary:
    """Write dense depth for every camera image of the shard's keyframes.

    Finished files are skipped (resume by rerunning); a keyframe that fails (missing or
    corrupt sweep file, malformed record) is reported in the summary and the run goes on.

    With ``config.transfer_labels`` (which needs ``point_classes``) every file also holds
    the ``semantics`` of its measured pixels.

    Raises:
        ValueError: an invalid config, an output folder built with other parameters,
            dynamic handling asked for with infos that carry no boxes, or label transfer
            without ``point_classes``.
    """
    config.validate("dense_depth")
    if config.transfer_labels and point_classes is None:
        raise ValueError("dense_depth.transfer_labels: the class taxonomy is needed")
    if config.dynamic and infos and not any(len(info["gt_boxes"]) for info in infos):
        # BEVDet pickles carry no boxes: moving objects would leave trails unnoticed.
        raise ValueError(
            "no keyframe of the info file has boxes (gt_boxes), so moving objects cannot be "
            "followed; rebuild the infos with tools/create_data.py or pass --no-dynamic"
        )
    out_dir = Path(out_dir)
    write_or_check_manifest(out_dir, manifest(config, cameras, point_classes))
    scenes = group_by_scene(infos)
    contexts: dict[str, SceneContext] = {}
    summary = DenseDepthSummary()
    for index, info, pending in pending_keyframes(
        infos, shard, out_dir, cameras, summary, "dense depth", show_progress
    ):
        try:
            scene = info.get("scene_token") or info.get("scene_name", "")
            if scene not in contexts:
                # Keyframes come scene by scene: keep only the current scene's context.
                contexts = {scene: scene_context(scenes[scene])}
            for cam, depth, confidence, classes, stats in keyframe_dense_targets(
                info, contexts[scene], dataroot, config, pending, point_classes
            ):
                save_dense_depth(
                    output_path(out_dir, cam, info["cams"][cam]["data_path"]),
                    depth,
                    confidence,
                    None if classes is None else classes[0],
                )
                summary.done += 1
                summary.stats.update(dataclasses.asdict(stats))
        except KeyError as err:
            summary.failed.append(f"sample {info.get('token', index)}: field {err} missing")
        except (FileNotFoundError, ValueError) as err:
            summary.failed.append(f"sample {info.get('token', index)}: {err}")
    return summary
