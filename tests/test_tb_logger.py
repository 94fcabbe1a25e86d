"""TensorBoard logger: what is written reads back with TensorBoard's own event reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from renderlss.train.tb_logger import TensorBoardLogger


def read_events(log_dir) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_scalars_image_and_text_read_back(tmp_path):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    with TensorBoardLogger(tmp_path) as logger:
        logger.scalars("train", {"loss": 1.5, "depth": torch.tensor(0.25)}, step=0)
        logger.scalars("train", {"loss": 0.75}, step=10)
        logger.scalars("", {"lr": 2e-4}, step=10)
        logger.image("vis/depth", picture, step=10)
        logger.text("config", "lr = 2e-4", step=0)
    events = read_events(tmp_path)
    tags = events.Tags()
    assert {"train/loss", "train/depth", "lr"} <= set(tags["scalars"])
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(0, 1.5), (10, 0.75)]
    assert [(e.step, e.value) for e in events.Scalars("train/depth")] == [(0, 0.25)]
    assert events.Scalars("lr")[0].value == pytest.approx(2e-4)
    (image,) = events.Images("vis/depth")
    assert (image.step, image.width, image.height) == (10, 5, 4)
    decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(decoded, picture)  # PNG is lossless
    (text,) = events.Tensors("config/text_summary")
    assert text.tensor_proto.string_val[0].decode() == "lr = 2e-4"


def test_disabled_logger_writes_nothing(tmp_path):
    log_dir = tmp_path / "tb"
    logger = TensorBoardLogger(log_dir, enabled=False)
    logger.scalars("train", {"loss": 1.0}, step=0)
    logger.image("vis", np.zeros((2, 2, 3), np.uint8), step=0)
    logger.text("t", "x", step=0)
    logger.flush()
    logger.close()
    assert not log_dir.exists()


def test_default_is_the_main_process(tmp_path):
    with TensorBoardLogger(tmp_path / "tb") as logger:
        assert logger.enabled  # no process group: this process is rank 0


def test_image_must_be_hw3_uint8(tmp_path):
    with TensorBoardLogger(tmp_path) as logger:
        with pytest.raises(ValueError, match="vis/bad.*HxWx3 uint8"):
            logger.image("vis/bad", np.zeros((4, 5), np.uint8), step=0)
        with pytest.raises(ValueError, match="float32"):
            logger.image("vis/bad", np.zeros((4, 5, 3), np.float32), step=0)
