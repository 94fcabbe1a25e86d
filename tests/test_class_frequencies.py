"""tools/class_frequencies.py with the demo config (2D + 3D losses), as ``make demo`` runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import REPO, load_tool

from renderlss.data.info_builder import create_infos
from renderlss.engine.experiment import load_experiment

CLASS_FREQUENCIES = load_tool("class_frequencies")
DEMO_CONFIG = str(REPO / "configs" / "synthetic_demo.py")


@pytest.fixture(scope="module")
def demo_overrides(synthetic_root, tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return [
        f"data.train_infos={str(out / 'renderlss_infos_train.pkl')!r}",
        # The fixture's labels are Occ3D-nuScenes (200x200x16 at 0.4 m); they nest the demo grid.
        "data.label_grid={'point_cloud_range':(-40.0,-40.0,-1.0,40.0,40.0,5.4),"
        "'voxel_size':(0.4,0.4,0.4)}",
        "model.loss.class_counts=''",
        "model.loss.occ3d_class_counts=''",
    ]


def test_ray_counts_with_a_config_that_also_trains_on_occ3d_labels(demo_overrides, tmp_path):
    out = tmp_path / "class_counts.json"
    argv = [DEMO_CONFIG, "--source", "rays", "--out", str(out), "--cfg-options", *demo_overrides]
    assert CLASS_FREQUENCIES.main(argv) == 0
    written = json.loads(out.read_text())
    counts = np.array(written["counts"])
    classes = load_experiment(DEMO_CONFIG, demo_overrides).data.classes
    assert written["class_names"][-1] == "free" and len(counts) == classes.num_classes
    # A LiDAR ray ends on a surface: no target pixel is free space, and every one has a class.
    assert counts[-1] == 0 and counts.sum() > 0


def test_voxel_counts_cover_the_camera_mask_of_every_sample(demo_overrides, tmp_path):
    out = tmp_path / "voxel_class_counts.json"
    argv = [DEMO_CONFIG, "--source", "occ", "--out", str(out), "--cfg-options", *demo_overrides]
    assert CLASS_FREQUENCIES.main(argv) == 0
    written = json.loads(out.read_text())
    grid_cells = int(np.prod(load_experiment(DEMO_CONFIG, demo_overrides).data.grid.shape))
    assert 0 < sum(written["counts"]) <= written["samples"] * grid_cells
    assert written["counts"][-1] > 0  # the camera mask sees free space
