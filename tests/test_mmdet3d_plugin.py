"""The mmdet3d plugin on the light install: registries, building from config dicts, a
training step through mmengine, the target transform against the LiDAR points, the metric
through mmengine's Evaluator against renderlss's own, mmdet3d info files, one Runner
iteration."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("mmdet3d", reason="the mmdet3d extra: pip install -e '.[mmdet3d]'")

from helpers import LOOP_OVERRIDES, REPO  # noqa: E402
from mmdet3d.registry import DATASETS, METRICS, MODELS, TRANSFORMS  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.evaluator import Evaluator  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.structures import BaseDataElement  # noqa: E402

from renderlss.configuration import ConfigError, to_dict  # noqa: E402
from renderlss.data.collate import collate  # noqa: E402
from renderlss.data.info_builder import create_infos  # noqa: E402
from renderlss.eval.metrics import OccupancyIoU  # noqa: E402
from renderlss.eval.ray_iou import RayIoU  # noqa: E402
from renderlss.geometry import (  # noqa: E402
    centre_convention_intrinsic,
    pose_matrix,
    transform_points,
)
from renderlss.mmdet3d.dataset import (
    RenderLSSOccDataset,  # noqa: E402
    read_records,  # noqa: E402
)
from renderlss.mmdet3d.experiment import experiment_config  # noqa: E402
from renderlss.mmdet3d.metric import RenderLSSOccMetric  # noqa: E402
from renderlss.mmdet3d.occupancy_model import RenderLSSOccupancy, renderlss_batch  # noqa: E402
from renderlss.mmdet3d.render_head import RenderLSSRenderHead  # noqa: E402
from renderlss.mmdet3d.single_iteration import single_iteration_config  # noqa: E402
from renderlss.mmdet3d.transforms import AttachRenderTargets, PackRenderLSSInputs  # noqa: E402
from renderlss.models.objective import loss_terms  # noqa: E402
from renderlss.records.infos import camera_to_key_ego, load_infos  # noqa: E402
from renderlss.targets.lidar import load_lidar_points  # noqa: E402

EXPERIMENT = str(REPO / "configs" / "synthetic_demo.py")
# The loop-sized network on the fixture's keyframe rays; the demo's class-count files are
# not there on a fresh machine.
OVERRIDES = [*LOOP_OVERRIDES, "data.targets.num_rays=64", "data.targets.adjacent_keyframes=0"]


@pytest.fixture(scope="module")
def infos(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return out / "renderlss_infos_train.pkl"


def plugin_dataset(infos, test_mode: bool, *extra: str) -> RenderLSSOccDataset:
    component = dict(experiment=EXPERIMENT, overrides=[*OVERRIDES, *extra])
    return DATASETS.build(
        dict(
            type="RenderLSSOccDataset",
            ann_file=str(infos),
            pipeline=[
                dict(type="AttachRenderTargets", **component),
                dict(type="PackRenderLSSInputs"),
            ],
            test_mode=test_mode,
            **component,
        )
    )


def test_every_component_is_in_the_mmdet3d_registries():
    expected = [
        (MODELS, "RenderLSSRenderHead", RenderLSSRenderHead),
        (MODELS, "RenderLSSOccupancy", RenderLSSOccupancy),
        (DATASETS, "RenderLSSOccDataset", RenderLSSOccDataset),
        (TRANSFORMS, "AttachRenderTargets", AttachRenderTargets),
        (TRANSFORMS, "PackRenderLSSInputs", PackRenderLSSInputs),
        (METRICS, "RenderLSSOccMetric", RenderLSSOccMetric),
    ]
    for registry, name, cls in expected:
        assert registry.get(name) is cls, f"{name} not in mmdet3d's {registry.name} registry"


def test_head_from_config_renders_the_depth_of_a_wall():
    # 8 x 2 x 2 voxels of 1 m from x = 0; voxels with x >= 5 are solid (sigma 50 / m). A ray
    # from (0.5, 1, 1) along +x (z_per_t = 1) meets the wall face x = 5 at t = 4.5; the
    # trilinear density rises from the last free voxel centre (x = 4.5, t = 4) to the first
    # solid one (x = 5.5, t = 5), and a sampled 0.5 m interval there stops all the light, so
    # the rendered depth lies in (4, 5).
    grid = dict(point_cloud_range=(0.0, 0.0, 0.0, 8.0, 2.0, 2.0), voxel_size=(1.0, 1.0, 1.0))
    experiment = dict(
        data=dict(grid=grid, classes=dict(occ_class_names=["wall"])),
        model=dict(head=dict(num_classes=2)),
    )
    head = MODELS.build(
        dict(
            type="RenderLSSRenderHead",
            experiment=experiment,
            overrides=["model.loss.lss_depth_weight=0.0", "render.jitter=False"],
        )
    ).eval()
    density = torch.zeros(1, 1, 8, 2, 2)
    density[:, :, 5:] = 50.0
    density.requires_grad_(True)
    logits = torch.zeros(1, 2, 8, 2, 2, requires_grad=True)
    rays = dict(
        origins=torch.tensor([[[0.5, 1.0, 1.0]]]),
        dirs=torch.tensor([[[1.0, 0.0, 0.0]]]),
        z_per_t=torch.ones(1, 1),
    )
    rendered = head(density, logits, rays)
    assert 4.0 < float(rendered.depth.detach()) < 5.0
    assert float(rendered.opacity.detach()) > 0.99
    targets = dict(
        rays,
        depth=torch.tensor([[5.0]]),
        semantics=torch.tensor([[0]]),
        confidence=torch.ones(1, 1),
    )
    losses = head.loss(density, logits, dict(targets=targets))
    assert {"loss_depth", "loss_semantic", "loss_distortion", "loss_entropy"} <= set(losses)
    sum(losses.values()).backward()
    assert density.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


def test_head_refuses_terms_that_need_the_network():
    with pytest.raises(ConfigError, match="lss_depth_weight"):
        RenderLSSRenderHead(overrides=["model.loss.lss_depth_weight=0.5"])


def test_attached_rays_end_on_lidar_points(infos):
    # The transform draws LiDAR rays; without augmentation (test mode) every ray's end
    # origin + dirs * depth / z_per_t is at a LiDAR return of the keyframe (key-ego frame).
    dataset = plugin_dataset(infos, test_mode=True)
    packed = dataset[0]
    element = packed["data_samples"]
    record = dataset.samples.infos[0]
    targets = element.targets
    has_depth = targets.depth > 0
    assert int(has_depth.sum()) > 10
    ends = targets.origins + targets.dirs * (targets.depth / targets.z_per_t)[:, None]
    points = load_lidar_points(dataset.samples.resolve(record["lidar_path"], record["token"]))
    lidar2ego = pose_matrix(record["lidar2ego_rotation"], record["lidar2ego_translation"])
    returns = torch.from_numpy(transform_points(lidar2ego, points[:, :3])).float()
    nearest = torch.cdist(ends[has_depth].float(), returns).min(dim=1).values
    # A return's ray goes through the centre of the pixel it projects into: its end is off by
    # up to half a pixel diagonal at the return's depth.
    focal = min(cam["cam_intrinsic"][0][0] for cam in record["cams"].values())
    allowed = targets.depth[has_depth] * 0.5 * 2**0.5 / focal + 1e-3
    assert bool((nearest <= allowed).all()), float((nearest - allowed).max())
    # Each ray starts at the centre of one of the cameras.
    centres = torch.from_numpy(
        np.stack([camera_to_key_ego(cam, record)[:3, 3] for cam in record["cams"].values()])
    ).float()
    assert float(torch.cdist(targets.origins.float(), centres).min(dim=1).values.max()) < 1e-3
    assert set(packed["inputs"]) == {"img", "intrinsic", "img_aug", "cam2ego"}
    assert element.voxel_semantics.shape == (16, 16, 4)


def test_query_rays_reach_the_wrapped_network(infos):
    packed = plugin_dataset(infos, True, "data.targets.query_rays=48")[0]
    query = packed["data_samples"].query_targets
    assert query.depth.shape == (48,) and bool((query.depth > 0).all())
    batch = renderlss_batch(
        {name: [value] for name, value in packed["inputs"].items()}, [packed["data_samples"]]
    )
    assert batch["query_targets"]["origins"].shape == (1, 48, 3)
    assert batch["targets"]["origins"].shape == (1, 64, 3)
    assert "query_targets" not in plugin_dataset(infos, True)[0]["data_samples"]


def test_model_from_config_trains_as_renderlss_does(infos):
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type="RenderLSSOccupancy", experiment=EXPERIMENT, overrides=OVERRIDES)
    )
    dataset = plugin_dataset(infos, test_mode=False)
    data = pseudo_collate([dataset[0]])
    # renderlss's own objective on the same batch is the truth of the wrapped loss.
    element = data["data_samples"][0]
    batch = collate(
        [
            dict(
                **{k: v[0] for k, v in data["inputs"].items()},
                targets=dict(element.targets.items()),
            )
        ]
    )
    model.eval()  # no random jitter: both passes see the same samples
    with torch.no_grad():
        predictions, rendered = model.net(batch)
        own = loss_terms(
            predictions,
            rendered,
            batch,
            model.config.model,
            {},
            model.config.data.classes.ignore_index,
            model.config.data.grid,
        )
        wrapped = model(data["inputs"], data["data_samples"], mode="loss")
    assert set(wrapped) == {f"loss_{name}" for name in own}
    for name, value in own.items():
        assert float(wrapped[f"loss_{name}"]) == pytest.approx(float(value), rel=1e-5)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    log = model.train_step(data, OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3)))
    assert np.isfinite(float(log["loss"].detach()))
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > len(before) // 2
    predicted = model.test_step(pseudo_collate([plugin_dataset(infos, True)[0]]))[0]
    assert predicted.pred_occupancy.shape == (16, 16, 4)
    # The predicted sample carries what the metric reads.
    component = dict(experiment=EXPERIMENT, overrides=OVERRIDES)
    evaluator = Evaluator(METRICS.build(dict(type="RenderLSSOccMetric", **component)))
    evaluator.process([predicted])
    assert 0 <= evaluator.evaluate(1)["renderlss/geometry_IoU"] <= 1


def test_metric_through_evaluator_matches_renderlss_metrics():
    grid = dict(point_cloud_range=(-8.0, -8.0, -1.0, 8.0, 8.0, 2.2), voxel_size=(1.6, 1.6, 1.6))
    names = ["car", "road", "others", "other_flat"]
    experiment = dict(
        data=dict(grid=grid, classes=dict(occ_class_names=names)),
        model=dict(head=dict(num_classes=len(names) + 1)),
    )
    metric = METRICS.build(dict(type="RenderLSSOccMetric", experiment=experiment))
    config = experiment_config(experiment)
    generator = torch.Generator().manual_seed(3)
    voxels = OccupancyIoU(names, 255)
    rays = RayIoU(names, config.data.grid, config.eval.ray_iou)
    samples = []
    for i in range(3):
        target = torch.randint(0, 5, (10, 10, 2), generator=generator)
        target[target == 3] = 4  # mostly free, as in the benchmark
        pred = torch.where(torch.rand(target.shape, generator=generator) < 0.7, target, 1)
        mask = torch.rand(target.shape, generator=generator) < 0.8
        origin = torch.tensor([[0.3 * i, -0.2, 0.5]], dtype=torch.float64)
        samples.append(
            BaseDataElement(
                metainfo=dict(token=f"s{i}", lidar_origin=origin),
                pred_occupancy=pred,
                voxel_semantics=target,
                mask_camera=mask,
            )
        )
        voxels.update(pred, target, mask)
        rays.update(pred, target, origin)
    evaluator = Evaluator(metric)
    evaluator.process(samples[:2])
    evaluator.process(samples[2:])
    scores = evaluator.evaluate(len(samples))
    expected = {**voxels.compute(config.eval.subset_exclude).as_dict(), **rays.compute().as_dict()}
    assert set(scores) == {f"renderlss/{key}" for key in expected}
    for key, value in expected.items():
        np.testing.assert_equal(scores[f"renderlss/{key}"], value, err_msg=key)
    assert expected["mIoU_4_classes"] > 0 and expected["RayIoU"] > 0


def mmdet3d_entry(record: dict) -> dict:
    """A renderlss record written as mmdet3d>=1.1's converter writes a data_list entry."""
    lidar2ego = pose_matrix(record["lidar2ego_rotation"], record["lidar2ego_translation"])
    ego2global = pose_matrix(record["ego2global_rotation"], record["ego2global_translation"])
    images = {}
    for name, cam in record["cams"].items():
        images[name] = dict(
            img_path=cam["data_path"].rsplit("/", 1)[1],
            # mmdet3d stores the dataset's matrix (pixel centres at integers).
            cam2img=centre_convention_intrinsic(cam["cam_intrinsic"]).tolist(),
            cam2ego=pose_matrix(cam["sensor2ego_rotation"], cam["sensor2ego_translation"]).tolist(),
            timestamp=cam["timestamp"] / 1e6,
        )
    return dict(
        token=record["token"],
        timestamp=record["timestamp"] / 1e6,
        ego2global=ego2global.tolist(),
        lidar_points=dict(
            lidar_path=record["lidar_path"].rsplit("/", 1)[1], lidar2ego=lidar2ego.tolist()
        ),
        images=images,
    )


def test_mmdet3d_info_files_give_the_camera_chain(infos, tmp_path):
    metadata, records = load_infos(infos)
    path = tmp_path / "mmdet3d_infos.pkl"
    data = dict(
        metainfo=dict(version="v1.0-synthetic"), data_list=[mmdet3d_entry(r) for r in records]
    )
    path.write_bytes(pickle.dumps(data))
    converted_meta, converted = read_records(str(path))
    assert "ego2global at its own timestamp" in converted_meta["missing"]
    for original, record in zip(records, converted):
        assert record["lidar_path"] == original["lidar_path"]
        for name, cam in original["cams"].items():
            assert record["cams"][name]["data_path"] == cam["data_path"]
            # The camera's own ego pose is not in the file: the keyframe's is taken. The chain
            # is then exactly the original one with that pose, and off from the true one by the
            # ego motion between the camera's and the LiDAR's timestamps.
            approx = camera_to_key_ego(record["cams"][name], record)
            key_pose = {k: original[k] for k in ("ego2global_rotation", "ego2global_translation")}
            np.testing.assert_allclose(
                approx, camera_to_key_ego({**cam, **key_pose}, original), atol=1e-9
            )
            motion = np.subtract(cam["ego2global_translation"], original["ego2global_translation"])
            exact = camera_to_key_ego(cam, original)
            assert np.linalg.norm(approx[:3, 3] - exact[:3, 3]) <= np.linalg.norm(motion) + 1e-6
    entry = mmdet3d_entry(records[0])
    del entry["images"]["CAM_BACK"]["cam2img"]
    path.write_bytes(pickle.dumps(dict(metainfo={}, data_list=[entry])))
    with pytest.raises(ValueError, match=f"sample {records[0]['token']}.*'cam2img'"):
        read_records(str(path))


def test_runner_trains_one_iteration(infos, tmp_path, monkeypatch):
    # The overrides resolved into one renderlss config file: mmengine formats the whole
    # config with yapf (several times), which takes minutes on 4 copies of the override list.
    experiment = tmp_path / "tiny_experiment.py"
    resolved = to_dict(experiment_config(EXPERIMENT, OVERRIDES))
    experiment.write_text("".join(f"{name} = {value!r}\n" for name, value in resolved.items()))
    monkeypatch.chdir(REPO)  # the sample config's paths are relative to the repository
    cfg = Config.fromfile("configs/mmdet3d/renderlss_occ3d.py")
    cfg = single_iteration_config(cfg, str(infos), str(tmp_path / "work"))
    for component in (
        cfg.model,
        cfg.train_dataloader.dataset,
        cfg.train_dataloader.dataset.pipeline[0],
    ):
        component.experiment = str(experiment)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert np.isfinite(runner.message_hub.get_scalar("train/loss").current())
    assert runner.iter == 1
