"""NaN guard: skipped steps, consecutive counting and the final error, on hand-made values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from renderlss.train.nan_guard import NanGuard, NonFiniteLossError, non_finite_names


def model_with_grads() -> tuple[nn.Linear, torch.optim.Optimizer]:
    model = nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


GOOD = {"depth": torch.tensor(0.5), "semantic": torch.tensor(1.25)}


def test_non_finite_names():
    values = {"a": 1.0, "b": math.nan, "c": torch.tensor(-math.inf), "d": torch.tensor(2.0)}
    assert non_finite_names(values) == ["b", "c"]


def test_finite_step_passes_and_keeps_gradients():
    model, optimizer = model_with_grads()
    guard = NanGuard(max_consecutive=3, log=pytest.fail)
    assert guard.check(0, GOOD, torch.tensor(1.0), ["tok0"], optimizer)
    assert model.weight.grad is not None
    assert (guard.consecutive, guard.skipped_total) == (0, 0)


def test_nan_term_skips_step_zeroes_grads_and_logs_the_term():
    model, optimizer = model_with_grads()
    messages = []
    guard = NanGuard(max_consecutive=3, log=messages.append)
    terms = {"depth": torch.tensor(math.nan), "semantic": torch.tensor(1.25)}
    assert not guard.check(17, terms, torch.tensor(1.0), ["tokA", "tokB"], optimizer)
    assert model.weight.grad is None and model.bias.grad is None
    assert (guard.consecutive, guard.skipped_total) == (1, 1)
    assert len(messages) == 1
    assert "step 17" in messages[0] and "non-finite depth;" in messages[0]
    assert "tokA" in messages[0] and "semantic=1.25" in messages[0]


def test_non_finite_gradient_from_backward_is_caught():
    model = nn.Linear(2, 1)
    (model(torch.ones(1, 2)) * torch.tensor(math.inf)).sum().backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
    messages = []
    guard = NanGuard(max_consecutive=2, log=messages.append)
    assert not guard.check(3, GOOD, grad_norm, ["tok"], optimizer)
    assert "non-finite grad_norm" in messages[0]
    assert model.weight.grad is None


def test_good_step_resets_the_count_and_the_limit_raises_with_details():
    _, optimizer = model_with_grads()
    guard = NanGuard(max_consecutive=3, log=lambda message: None)
    bad = {"depth": torch.tensor(0.5), "semantic": torch.tensor(math.inf)}
    assert not guard.check(1, bad, None, ["s1"], optimizer)
    assert not guard.check(2, bad, None, ["s2"], optimizer)
    assert guard.check(3, GOOD, None, ["s3"], optimizer)
    assert guard.consecutive == 0 and guard.skipped_total == 2
    assert not guard.check(4, bad, 1.0, ["s4"], optimizer)
    assert not guard.check(5, GOOD, math.nan, ["s5"], optimizer)
    with pytest.raises(NonFiniteLossError) as raised:
        guard.check(6, bad, 2.0, ["s6a", "s6b"], optimizer)
    message = str(raised.value)
    assert "step 6" in message and "3 consecutive" in message
    for text in ("s4", "s5", "s6a", "s6b", "semantic=inf", "depth=0.5", "grad_norm"):
        assert text in message
    assert "s1" not in message  # an earlier streak that recovered is not blamed
    assert guard.skipped_total == 5


def test_state_dict_round_trip_and_bad_limit():
    _, optimizer = model_with_grads()
    guard = NanGuard(max_consecutive=4, log=lambda message: None)
    guard.check(0, {"x": math.nan}, None, [], optimizer)
    other = NanGuard(max_consecutive=4)
    other.load_state_dict(guard.state_dict())
    assert (other.consecutive, other.skipped_total) == (1, 1)
    with pytest.raises(ValueError, match="max_consecutive"):
        NanGuard(max_consecutive=0)
