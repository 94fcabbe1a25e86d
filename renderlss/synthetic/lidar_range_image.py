"""The range-image geometry of the synthetic LiDAR, and of whichever LiDAR a dataroot holds.

The synthetic LIDAR_TOP copies the HDL-32E's 32 evenly spaced lasers (``rig.
LIDAR_ELEVATIONS_DEG``) and fires ``azimuth_steps`` times per revolution at azimuths
``k * 360 / azimuth_steps``: a field of view half a laser spacing beyond the outer lasers
puts one laser per row, and half a column of offset one firing per column.
"""

from __future__ import annotations

import json
from pathlib import Path

from renderlss.labels.range_image import RangeImageConfig, beam_centred_fov
from renderlss.synthetic import rig
from renderlss.synthetic.generate import META_DIR


def synthetic_range_image_config(azimuth_steps: int) -> RangeImageConfig:
    """One pixel per synthetic LiDAR ray: 32 rows, ``azimuth_steps`` columns."""
    elevations = rig.LIDAR_ELEVATIONS_DEG
    fov_up, fov_down = beam_centred_fov(
        float(elevations.min()), float(elevations.max()), len(elevations)
    )
    return RangeImageConfig(
        fov_up_deg=fov_up,
        fov_down_deg=fov_down,
        rows=len(elevations),
        columns=azimuth_steps,
        column_offset=0.5,
    )


def dataroot_range_image_config(dataroot: str | Path) -> RangeImageConfig:
    """The synthetic LiDAR's geometry for a synthetic dataroot (its ``synthetic_meta/
    config.json`` names the azimuth steps), else the nuScenes HDL-32E defaults."""
    path = Path(dataroot) / META_DIR / "config.json"
    if not path.is_file():
        return RangeImageConfig()
    try:
        steps = int(json.loads(path.read_text())["azimuth_steps"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: field azimuth_steps unreadable ({err})") from err
    return synthetic_range_image_config(steps)
