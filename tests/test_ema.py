"""EMA teacher: the momentum schedule and updates against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from renderlss.train.ema import EmaMomentum, ModelEMA


def make_model(weight: float, bias: float) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(weight)
        model[0].bias.fill_(bias)
    return model


def set_weights(model: nn.Module, weight: float, bias: float) -> None:
    with torch.no_grad():
        model[0].weight.fill_(weight)
        model[0].bias.fill_(bias)


def test_default_schedule_by_hand():
    schedule = EmaMomentum()
    assert schedule(0) == 0.0  # 1 - 101/101
    assert schedule(1) == pytest.approx(1 / 102)  # 1 - 101/102
    assert schedule(50) == pytest.approx(50 / 151)
    assert schedule(100_899) == pytest.approx(0.999)  # 1 - 101/101000 = 0.999 exactly
    assert schedule(10**7) == 0.999  # capped
    assert EmaMomentum(warm=0, max_momentum=0.9)(3) == 0.75
    with pytest.raises(ValueError):
        EmaMomentum(max_momentum=1.0)


def test_update_by_hand():
    # warm = 0: m(1) = 1 - 1/2 = 0.5, m(3) = 1 - 1/4 = 0.75.
    student = make_model(weight=1.0, bias=-2.0)
    ema = ModelEMA(student, EmaMomentum(warm=0))
    set_weights(student, 3.0, 2.0)
    assert ema.update(student, step=1) == 0.5
    assert ema.module[0].weight.item() == 2.0  # 0.5 * 1 + 0.5 * 3
    assert ema.module[0].bias.item() == 0.0  # 0.5 * -2 + 0.5 * 2
    set_weights(student, 6.0, 4.0)
    ema.update(student, step=3)
    assert ema.module[0].weight.item() == 3.0  # 0.75 * 2 + 0.25 * 6
    assert ema.module[0].bias.item() == 1.0  # 0.75 * 0 + 0.25 * 4
    assert ema.last_step == 3


def test_buffers_are_copied_not_averaged():
    student = make_model(1.0, 0.0)
    ema = ModelEMA(student, EmaMomentum(warm=0))
    student.train()
    student(torch.tensor([[1.0], [3.0]]))  # running mean 0.9 * 0 + 0.1 * 2 = 0.2
    ema.update(student, step=1)
    assert ema.module[1].running_mean.item() == pytest.approx(0.2)
    assert ema.module[1].num_batches_tracked.item() == 1


def test_teacher_is_frozen_and_separate():
    student = make_model(1.0, 0.0)
    ema = ModelEMA(student)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    set_weights(student, 5.0, 5.0)
    assert ema.module[0].weight.item() == 1.0
    assert ema.update(student, step=0) == 0.0  # the first update copies the student
    assert ema.module[0].weight.item() == 5.0


def test_wrapped_student_and_custom_schedule():
    student = make_model(0.0, 0.0)
    ema = ModelEMA(nn.DataParallel(student), momentum_schedule=lambda step: 0.25)
    assert list(ema.module.state_dict()) == list(student.state_dict())
    set_weights(student, 4.0, 8.0)
    ema.update(nn.DataParallel(student), step=10)
    assert ema.module[0].weight.item() == 3.0  # 0.25 * 0 + 0.75 * 4
    assert ema.module[0].bias.item() == 6.0


def test_state_dict_round_trip():
    ema = ModelEMA(make_model(1.0, 2.0))
    ema.update(make_model(3.0, 4.0), step=7)
    other = ModelEMA(make_model(0.0, 0.0))
    other.load_state_dict(ema.state_dict())
    assert other.last_step == 7
    for key, value in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[key], value)
