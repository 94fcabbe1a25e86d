"""The pixel convention against nuscenes-devkit: a LiDAR target of renderlss lands in the pixel
that the devkit's own projection (``map_pointcloud_to_image``, pixel centres at integer
coordinates) rounds to, with the same depth, and its ray leaves through that pixel's centre."""

from __future__ import annotations

import numpy as np
from nuscenes.nuscenes import NuScenes, NuScenesExplorer

from renderlss.data.info_builder import create_infos
from renderlss.geometry import unproject_pixels
from renderlss.records.infos import load_infos
from renderlss.targets.sources import LidarTargetSource

CAMERAS = ("CAM_FRONT", "CAM_BACK_LEFT")
MIN_DEPTH = 1.0
# The devkit drops points within one pixel of the border; compare pixels clear of it.
BORDER = 2


def nearest_by_pixel(rows: np.ndarray, cols: np.ndarray, depth: np.ndarray) -> dict:
    """{(row, col): nearest depth} of points already assigned to pixels."""
    nearest: dict[tuple[int, int], float] = {}
    for key, value in zip(zip(rows.tolist(), cols.tolist()), depth.tolist()):
        nearest[key] = min(value, nearest.get(key, np.inf))
    return nearest


def inside(nearest: dict, width: int, height: int) -> dict:
    return {
        (r, c): d
        for (r, c), d in nearest.items()
        if BORDER <= r < height - BORDER and BORDER <= c < width - BORDER
    }


def test_lidar_targets_land_in_the_pixel_the_devkit_projects_to(synthetic_root, tmp_path):
    create_infos(str(synthetic_root), "v1.0-synthetic", str(tmp_path), show_progress=False)
    _, infos = load_infos(tmp_path / "renderlss_infos_train.pkl")
    info = infos[0]
    # An empty ego box (lower corner above the upper one) keeps every return, as the devkit does.
    source = LidarTargetSource(synthetic_root, np.zeros(256, np.uint8), 255, (1, 1, 1, 0, 0, 0), 0)
    targets = source(info, list(CAMERAS))
    explorer = NuScenesExplorer(NuScenes("v1.0-synthetic", str(synthetic_root), verbose=False))
    for cam in CAMERAS:
        cam_info = info["cams"][cam]
        width, height = cam_info["width"], cam_info["height"]
        points, depth, _ = explorer.map_pointcloud_to_image(
            info["lidar_token"], cam_info["sample_data_token"], min_dist=MIN_DEPTH
        )
        # Round to the nearest integer centre (the devkit's pixel of a point).
        devkit = nearest_by_pixel(
            np.floor(points[1] + 0.5).astype(int), np.floor(points[0] + 0.5).astype(int), depth
        )
        ours_targets = targets[cam]
        far = ours_targets.depth > MIN_DEPTH
        cols, rows = np.floor(ours_targets.uv[far]).astype(int).T
        ours = nearest_by_pixel(rows, cols, ours_targets.depth[far])
        devkit, ours = inside(devkit, width, height), inside(ours, width, height)
        # A point within float error of a pixel edge may fall either side (a handful).
        common = sorted(set(ours) & set(devkit))
        assert len(ours) > 500 and len(common) >= 0.998 * len(set(ours) | set(devkit))
        same_depth = np.isclose([ours[p] for p in common], [devkit[p] for p in common], rtol=1e-5)
        assert same_depth.mean() >= 0.998

        # The ray through a target's pixel centre is the devkit's ray through (col, row).
        stored = np.asarray(
            explorer.nusc.get(
                "calibrated_sensor",
                explorer.nusc.get("sample_data", cam_info["sample_data_token"])[
                    "calibrated_sensor_token"
                ],
            )["camera_intrinsic"]
        )
        centres = ours_targets.uv[far][:50]
        ours_rays = unproject_pixels(centres, np.ones(50), np.asarray(cam_info["cam_intrinsic"]))
        devkit_rays = unproject_pixels(np.floor(centres), np.ones(50), stored)
        np.testing.assert_allclose(ours_rays, devkit_rays, atol=1e-12)
