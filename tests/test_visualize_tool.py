"""tools/visualize.py on the session's synthetic world, and the figures it composes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_NETWORK_OVERRIDES, load_tool, save_untrained_checkpoint
from PIL import Image

from renderlss.data.collate import collate
from renderlss.data.dataset import OccDataset
from renderlss.data.info_builder import create_infos
from renderlss.engine.build import load_trained_model
from renderlss.engine.evaluation import eval_dataset
from renderlss.engine.experiment import load_experiment
from renderlss.eval.metrics import occ3d_eval_mask
from renderlss.geometry.grid import VoxelGrid
from renderlss.models.occupancy_net import predict_occupancy
from renderlss.vis.occupancy_views import bev_view
from renderlss.vis.sample_panels import occupancy_figures, rig_depth_figure, rig_semantic_figure

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = str(REPO / "configs" / "synthetic_demo.py")
STRIDE = 8
# A test-sized network on the Occ3D grid of the session dataset (its labels are 200x200x16).
OVERRIDES = [
    *TINY_NETWORK_OVERRIDES,
    "data.grid.point_cloud_range=(-40.0,-40.0,-1.0,40.0,40.0,5.4)",
    "data.grid.voxel_size=(0.4,0.4,0.4)",
    f"eval.image_stride={STRIDE}",
]


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    """(overrides, checkpoint) of an untrained tiny network on the session's dataroot."""
    infos = tmp_path_factory.mktemp("vis_infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(infos), show_progress=False)
    overrides = OVERRIDES + [f"data.val_infos={str(infos / 'renderlss_infos_val.pkl')!r}"]
    config = load_experiment(DEMO_CONFIG, [o for o in overrides if not o.startswith("eval.")])
    checkpoint = save_untrained_checkpoint(config, infos / "step_000000.pth")
    return overrides, config, checkpoint


def test_visualize_writes_the_four_pictures_of_a_sample(trained, tmp_path, capsys):
    overrides, config, checkpoint = trained
    argv = [DEMO_CONFIG, str(checkpoint), "--index", "1", "--out-dir", str(tmp_path)]
    argv += ["--device", "cpu", "--cfg-options", *overrides]
    assert load_tool("visualize").main(argv) == 0
    printed = capsys.readouterr().out.split()
    dataset = eval_dataset(config, config.data.val_infos)
    token = dataset.infos[1]["token"]
    names = ["depth", "semantics", "bev", "perspective"]
    assert printed == [str(tmp_path / f"0001_{token}_{name}.png") for name in names]
    pictures = {name: np.asarray(Image.open(p)) for name, p in zip(names, printed)}

    # 160x90 images at stride 8 are 20x11 maps, drawn 12 times enlarged (240x132); one
    # camera per row, four tiles (depth) or three (semantics) per camera.
    cameras = len(config.data.cameras)
    assert pictures["depth"].shape[0] > cameras * 132 and pictures["depth"].shape[1] > 4 * 240
    assert pictures["semantics"].shape[0] > cameras * 132
    assert pictures["semantics"].shape[1] > 3 * 240

    # The occupancy pictures are those of the checkpoint's prediction and the labels.
    model = load_trained_model(config, checkpoint, "model", "cpu")
    batch = collate([dataset[1]])
    with torch.no_grad():
        volume = model.volume(batch)
    classes = config.data.classes
    threshold = config.eval.density_threshold  # the rule of the config (demo: logits)
    predicted = predict_occupancy(
        volume["occupancy_density"], volume["logits"], threshold, classes.free_index
    )[0]
    mask = occ3d_eval_mask({"mask_camera": batch["mask_camera"][0]}, "camera", token)
    bev, oblique = occupancy_figures(
        predicted.numpy(),
        batch["voxel_semantics"][0].numpy(),
        classes.occ_class_names,
        config.data.grid,
        mask.numpy(),
        "mask_camera",
    )
    np.testing.assert_array_equal(pictures["bev"], bev)
    np.testing.assert_array_equal(pictures["perspective"], oblique)


def test_visualize_refuses_samples_outside_the_split(trained, tmp_path, capsys):
    overrides, _, checkpoint = trained
    argv = [DEMO_CONFIG, str(checkpoint), "--range", "2", "99", "--out-dir", str(tmp_path)]
    assert load_tool("visualize").main([*argv, "--cfg-options", *overrides]) == 2
    assert "outside the split's [0, 3)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_occupancy_figures_put_prediction_left_and_truth_right():
    grid = VoxelGrid((0, 0, 0, 4, 4, 2), (1, 1, 1))
    names = ["a", "b"]
    truth = np.full((4, 4, 2), 2)
    truth[:, :, 0] = 0
    predicted = np.full((4, 4, 2), 2)
    predicted[1, 2, 1] = 1
    bev, oblique = occupancy_figures(predicted, truth, names, grid)
    left, right = bev_view(predicted, 2, names, grid=grid), bev_view(truth, 2, names, grid=grid)
    height, width = left.shape[:2]
    # Titles sit above the pictures; both halves end at the bottom edge.
    np.testing.assert_array_equal(bev[-height:, :width], left)
    np.testing.assert_array_equal(bev[-height:, -width:], right)
    assert oblique.shape[1] > 2 * 2 * 2 * (4 + 4)


def test_rig_figures_need_one_map_per_camera():
    image = np.zeros((8, 10, 3), np.uint8)
    depth = np.ones((8, 10))
    with pytest.raises(ValueError, match="targets: 1 maps for 2 cameras"):
        rig_depth_figure(["A", "B"], [image, image], [depth], [depth, depth], 1.0, 10.0)
    labels = np.zeros((8, 10), np.int64)
    one = rig_semantic_figure(["A"], [image], [labels], [labels], ["a"])
    two = rig_semantic_figure(["A", "B"], [image, image], [labels] * 2, [labels] * 2, ["a"])
    assert two.shape[0] > 2 * one.shape[0] - 1 and two.shape[1] == one.shape[1]


def test_target_classes_come_from_the_users_ground_truth(trained, synthetic_root, tmp_path):
    """With eval.ground_truth_dir, the semantics picture shows that folder's classes: a
    folder that says every pixel is class 4 draws another picture than the oracle's."""
    overrides, config, checkpoint = trained
    info = eval_dataset(config, config.data.val_infos).infos[0]
    truth = tmp_path / "truth"
    for cam, cam_info in info["cams"].items():
        stem = Path(cam_info["data_path"]).stem
        with np.load(synthetic_root / "oracle" / cam / f"{stem}.npz") as oracle:
            depth = oracle["depth"]
        (truth / cam).mkdir(parents=True)
        np.savez(
            truth / cam / f"{stem}.npz", depth=depth, semantics=np.full_like(depth, 4, np.uint8)
        )

    def semantics_picture(out: Path, *extra: str) -> np.ndarray:
        argv = [DEMO_CONFIG, str(checkpoint), "--index", "0", "--out-dir", str(out)]
        argv += ["--device", "cpu", "--cfg-options", *overrides, *extra]
        assert load_tool("visualize").main(argv) == 0
        return np.asarray(Image.open(out / f"0000_{info['token']}_semantics.png"))

    oracle = semantics_picture(tmp_path / "oracle")
    own = semantics_picture(tmp_path / "own", f"eval.ground_truth_dir={str(truth)!r}")
    # (the legend lists the classes present, so even the picture's height may change)
    assert oracle.shape != own.shape or not np.array_equal(oracle, own)


def test_saved_render_volume_is_the_networks_volume_and_the_samples_rays(trained, tmp_path):
    """tools/save_render_volume.py writes what the network predicts for the sample and the
    sample's target rays, in the form tools/benchmark.py --render-volume reads."""
    overrides, config, checkpoint = trained
    out = tmp_path / "volume.pt"
    argv = [DEMO_CONFIG, str(checkpoint), "--index", "2", "--out", str(out), "--device", "cpu"]
    assert load_tool("save_render_volume").main([*argv, "--cfg-options", *overrides]) == 0

    model = load_trained_model(config, checkpoint, "model", "cpu")
    sample = OccDataset(config.data.val_infos, config.data, train=False)[2]
    with torch.no_grad():
        volume = model.volume(collate([sample]))
    rays, density, logits = load_tool("benchmark").render_inputs(config, str(out), "cpu")
    torch.testing.assert_close(density, volume["density"])
    torch.testing.assert_close(logits, volume["logits"])
    assert density.shape[2:] == config.data.grid.shape
    for key in ("origins", "dirs", "z_per_t"):
        torch.testing.assert_close(rays[key], sample["targets"][key][None])


def test_save_render_volume_refuses_samples_outside_the_split(trained, tmp_path, capsys):
    overrides, _, checkpoint = trained
    argv = [DEMO_CONFIG, str(checkpoint), "--index", "3", "--out", str(tmp_path / "v.pt")]
    assert load_tool("save_render_volume").main([*argv, "--cfg-options", *overrides]) == 2
    assert "--index 3: the val split has 3 samples" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
