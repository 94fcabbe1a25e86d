"""The learned completion stage: network shapes, that applying it fills only empty pixels (with
its own level, measured and classical pixels byte for byte as they were), a tiny training
run on a hand-built ground plane (loss falls, held-out pixels within 10 % of the plane's
exact depth, larger predicted scale where the depth is unpredictable noise), resume, and
errors for missing inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from renderlss.labels.artifacts import MANIFEST_NAME
from renderlss.labels.learned_completion import (
    CompletionNet,
    CompletionNetConfig,
    CompletionSample,
    CompletionTrainingConfig,
    FillConfig,
    apply_completion_net,
    completion_loss,
    image_tensor,
    load_completion_net,
    load_training_samples,
    predict_depth,
    train_completion_net,
)
from renderlss.records.files import output_path
from renderlss.targets.dense_depth_files import load_dense_depth, save_dense_depth
from renderlss.train.checkpoint import CheckpointError

TINY_NET = CompletionNetConfig(max_depth=60.0, channels=(8, 16), input_downscale=1)
HEIGHT, WIDTH = 32, 48
# The plane: camera 1.5 m above flat ground, focal length 40 px, horizon at row 8; depth of
# a pixel-centre row v below the horizon is z = f * h / (v + 0.5 - horizon).
FOCAL, CAMERA_HEIGHT, HORIZON = 40.0, 1.5, 8.0
HELD_OUT = (slice(12, HEIGHT), slice(20, 28))  # never a target or an input
NOISE_BOX = (slice(18, 30), slice(2, 14))  # i.i.d. random depth: unpredictable


def plane_depth() -> np.ndarray:
    """[H, W] exact depth of the ground plane (0 above the horizon: sky)."""
    rows = np.arange(HEIGHT, dtype=np.float64)[:, None] + 0.5 - HORIZON
    depth = np.where(rows > 0, FOCAL * CAMERA_HEIGHT / np.maximum(rows, 1e-9), 0.0)
    return np.broadcast_to(depth, (HEIGHT, WIDTH)).astype(np.float32)


def plane_image() -> np.ndarray:
    """[H, W, 3] uint8: a vertical gradient (the image tells rows apart), sky blue, the
    noise box marked red."""
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 1] = np.linspace(0, 255, HEIGHT, dtype=np.uint8)[:, None]
    image[: int(HORIZON), :, 2] = 255
    image[NOISE_BOX + (0,)] = 255
    return image


def plane_samples(count: int) -> list[CompletionSample]:
    """``count`` training images of the plane with fresh noise in the box and the held-out
    block removed."""
    rng = np.random.default_rng(7)
    samples = []
    for _ in range(count):
        depth = plane_depth().copy()
        depth[NOISE_BOX] = rng.uniform(3.0, 30.0, depth[NOISE_BOX].shape)
        depth[HELD_OUT] = 0.0
        samples.append(CompletionSample(plane_image(), depth, (depth > 0).astype(np.float32)))
    return samples


TRAINING = CompletionTrainingConfig(
    steps=150, batch_size=4, lr=5e-3, checkpoint_every=150, holes=2, keep_fraction=(0.1, 0.6)
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, per-step losses, checkpoint) of the tiny run on the plane."""
    torch.set_num_threads(1)
    losses = []
    checkpoint = tmp_path_factory.mktemp("completion") / "net.pth"
    model = train_completion_net(
        plane_samples(8), TINY_NET, TRAINING, checkpoint, lambda _, m: losses.append(m)
    )
    return model, losses, checkpoint


def evaluation_input() -> np.ndarray:
    """[H, W] the plane with the held-out block and the noise box empty."""
    depth = plane_depth().copy()
    depth[HELD_OUT] = 0.0
    depth[NOISE_BOX] = 0.0
    return depth


def test_network_shapes_at_odd_sizes():
    for factor in (1, 2, 3):
        config = CompletionNetConfig(max_depth=50.0, channels=(4, 8, 8), input_downscale=factor)
        net = CompletionNet(config)
        prediction = net(torch.rand(2, 3, 37, 50), torch.rand(2, 37, 50) * 40)
        for value in (prediction.log_depth, prediction.scale, prediction.surface_logit):
            assert value.shape == (2, 37, 50)
        assert bool((prediction.depth > 0).all()) and bool((prediction.depth <= 50.0).all())
        assert bool((prediction.scale > 0).all())
    # Several hundred thousand parameters at the defaults.
    assert 1e5 < sum(p.numel() for p in CompletionNet(CompletionNetConfig()).parameters()) < 1e6


def test_training_reduces_the_loss_and_predicts_held_out_plane(trained):
    model, losses, _ = trained
    truth = plane_depth()
    untrained = CompletionNet(TINY_NET).eval()
    batch_input = evaluation_input()
    target = torch.from_numpy(truth[None])
    valid = target > 0
    valid[0, NOISE_BOX[0], NOISE_BOX[1]] = False
    with torch.no_grad():
        before, after = (
            completion_loss(
                net(image_tensor([plane_image()]), torch.from_numpy(batch_input[None])),
                target,
                valid,
                valid,
                TRAINING.surface_weight,
            )["nll"]
            for net in (untrained, model)
        )
    assert float(after) < float(before) - 1.0
    assert np.mean([m["total"] for m in losses[-10:]]) < np.mean([m["total"] for m in losses[:10]])
    predicted, _, _ = predict_depth(model, plane_image(), batch_input)
    relative = np.abs(predicted[HELD_OUT] - truth[HELD_OUT]) / truth[HELD_OUT]
    # Rows 12..31 lie 3.1 m to 15.5 m away; the plane is smooth in rows, so 10 % is ample.
    assert float(relative.mean()) < 0.1, relative.mean()


def test_scale_is_larger_where_the_error_is(trained):
    model, _, _ = trained
    predicted, scale, _ = predict_depth(model, plane_image(), evaluation_input())
    noise = plane_samples(1)[0].depth  # one draw of the box's noise
    plane_error = np.abs(np.log(predicted[HELD_OUT]) - np.log(plane_depth()[HELD_OUT])).mean()
    noise_error = np.abs(np.log(predicted[NOISE_BOX]) - np.log(noise[NOISE_BOX])).mean()
    assert noise_error > 2 * plane_error
    assert float(scale[NOISE_BOX].mean()) > 2 * float(scale[HELD_OUT].mean())


def test_resume_continues_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    short = CompletionTrainingConfig(steps=2, batch_size=2, checkpoint_every=1)
    samples = plane_samples(2)
    path = tmp_path / "resumed.pth"
    train_completion_net(samples, TINY_NET, short, path)
    assert load_completion_net(path)[1]["meta"]["step"] == 2
    longer = CompletionTrainingConfig(steps=4, batch_size=2, checkpoint_every=1)
    resumed = train_completion_net(samples, TINY_NET, longer, path)
    straight = train_completion_net(samples, TINY_NET, longer, tmp_path / "straight.pth")
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    other = CompletionTrainingConfig(steps=4, batch_size=2, lr=1e-4)
    with pytest.raises(ValueError, match="other configs"):
        train_completion_net(samples, TINY_NET, other, path)


def one_image_folder(root, depth, confidence, semantics):
    """(infos, dataroot, dense folder) of one keyframe with one camera image."""
    data_path = "samples/CAM_FRONT/frame.png"
    (root / "samples/CAM_FRONT").mkdir(parents=True)
    cv2.imwrite(str(root / data_path), plane_image()[..., ::-1])
    info = dict(
        token="tok0",
        cams=dict(
            CAM_FRONT=dict(
                data_path=data_path,
                cam_intrinsic=[[FOCAL, 0, WIDTH / 2], [0, FOCAL, HORIZON], [0, 0, 1]],
                width=WIDTH,
                height=HEIGHT,
            )
        ),
    )
    dense = root / "dense"
    save_dense_depth(output_path(dense, "CAM_FRONT", data_path), depth, confidence, semantics)
    (dense / MANIFEST_NAME).write_text('{"format": "x", "config": {"filled_confidence": 0.5}}')
    return [info], root, dense


def test_apply_fills_only_empty_pixels(tmp_path, trained):
    _, _, checkpoint = trained
    rng = np.random.default_rng(3)
    depth = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    confidence = np.zeros_like(depth)
    measured = rng.random(depth.shape) < 0.3
    classical = ~measured & (rng.random(depth.shape) < 0.3)
    depth[measured | classical] = rng.uniform(2.0, 50.0, int((measured | classical).sum()))
    confidence[measured], confidence[classical] = 1.0, 0.5
    semantics = rng.integers(0, 17, depth.shape).astype(np.uint8)
    infos, dataroot, dense = one_image_folder(tmp_path, depth, confidence, semantics)
    out = tmp_path / "learned"
    # Every empty pixel accepted, so every one must be filled.
    accept_all = FillConfig(level=0.25, min_surface_probability=0.0, max_scale=1e9)
    summary = apply_completion_net(
        infos, dataroot, dense, out, checkpoint, accept_all, ["CAM_FRONT"], show_progress=False
    )
    assert summary.done == 1 and not summary.failed
    written = output_path(out, "CAM_FRONT", infos[0]["cams"]["CAM_FRONT"]["data_path"])
    source = output_path(dense, "CAM_FRONT", infos[0]["cams"]["CAM_FRONT"]["data_path"])
    with np.load(written) as new, np.load(source) as old:
        had = old["confidence"] > 0
        np.testing.assert_array_equal(new["depth"][had], old["depth"][had])
        np.testing.assert_array_equal(new["confidence"][had], old["confidence"][had])
        np.testing.assert_array_equal(new["semantics"], old["semantics"])
        assert set(np.unique(new["confidence"][~had])) == {64}  # round(255 * 0.25)
        assert (new["depth"][~had] > 0).all()
    assert summary.filled_pixels == int((~(measured | classical)).sum())
    # Rerun: the finished file is skipped.
    again = apply_completion_net(
        infos, dataroot, dense, out, checkpoint, accept_all, ["CAM_FRONT"], show_progress=False
    )
    assert again.done == 0 and again.skipped == 1
    # The thresholds: nothing is sure enough at a scale bound below the network's floor.
    strict = FillConfig(max_scale=1e-4)
    apply_completion_net(
        infos, dataroot, dense, tmp_path / "strict", checkpoint, strict, ["CAM_FRONT"], False
    )
    _, strict_confidence = load_dense_depth(
        output_path(tmp_path / "strict", "CAM_FRONT", "frame.png")
    )
    np.testing.assert_array_equal(strict_confidence > 0, had)


def test_missing_checkpoint_and_inputs_are_named(tmp_path):
    depth = plane_depth()
    infos, dataroot, dense = one_image_folder(tmp_path, depth, (depth > 0).astype(np.float32), None)
    with pytest.raises(CheckpointError, match="missing.pth"):
        apply_completion_net(
            infos,
            dataroot,
            dense,
            tmp_path / "o",
            tmp_path / "missing.pth",
            FillConfig(),
            ["CAM_FRONT"],
            False,
        )
    with pytest.raises(FileNotFoundError, match=MANIFEST_NAME):
        load_training_samples(infos, dataroot, tmp_path / "nowhere", ["CAM_FRONT"])
    output_path(dense, "CAM_FRONT", "frame.png").unlink()
    with pytest.raises(FileNotFoundError, match="tok0 CAM_FRONT"):
        load_training_samples(infos, dataroot, dense, ["CAM_FRONT"])
