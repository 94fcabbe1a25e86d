"""Exponential-moving-average teacher of a model.

The teacher's floating-point parameters follow the student as
``teacher = m * teacher + (1 - m) * student`` with a momentum ``m`` that grows with the step,
so early on the teacher tracks the fast-changing student closely and later it averages over
about ``1 / (1 - max_momentum)`` steps. Buffers (BatchNorm statistics, counters) are by
default copied from the student as they are: they are statistics of the data, not weights to
be averaged; ``buffers="average"`` moves floating-point buffers by the same EMA instead.
In a distributed run every rank's student has the same weights but BatchNorm statistics of
its own batch; :meth:`ModelEMA.update` gives every rank rank 0's teacher buffers, so all ranks
hold the teacher that rank 0 saves.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as torch_dist
from torch import nn

from renderlss.train.distributed import unwrap_model


@dataclass(frozen=True)
class EmaMomentum:
    """``m(step) = min(max_momentum, 1 - (1 + warm) / (step + 1 + warm))``.

    ``m(0) = 0``: the first update copies the student.
    """

    warm: int = 100
    max_momentum: float = 0.999

    def __post_init__(self) -> None:
        if self.warm < 0 or not 0 <= self.max_momentum < 1:
            raise ValueError(
                f"EmaMomentum: warm >= 0 and 0 <= max_momentum < 1 required, got {self}"
            )

    def __call__(self, step: int) -> float:
        return min(self.max_momentum, 1 - (1 + self.warm) / (step + 1 + self.warm))


class ModelEMA:
    """A frozen copy of ``model`` (bare or DDP-wrapped) that follows it by EMA.

    Attributes:
        module: the teacher network, in eval mode, with ``requires_grad`` off.
        last_step: the step of the latest :meth:`update`, -1 before the first.

    Args:
        buffers: ``"copy"`` the student's buffers at every update, or ``"average"`` the
            floating-point ones by the EMA (integer buffers such as counters are copied).
    """

    def __init__(
        self,
        model: nn.Module,
        momentum_schedule: Callable[[int], float] | None = None,
        buffers: Literal["copy", "average"] = "copy",
    ) -> None:
        if buffers not in ("copy", "average"):
            raise ValueError(f"ModelEMA: buffers must be 'copy' or 'average', got {buffers!r}")
        self.module = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)
        self.momentum_schedule = momentum_schedule or EmaMomentum()
        self.buffers = buffers
        self.last_step = -1

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Move the teacher towards ``model`` with the momentum of ``step``.

        Returns:
            the momentum used.
        """
        momentum = self.momentum_schedule(step)
        student = unwrap_model(model)
        teacher_params = dict(self.module.named_parameters())
        for name, param in student.named_parameters():
            target = teacher_params[name]
            if target.is_floating_point():
                target.lerp_(param.detach().to(target.dtype), 1 - momentum)
            else:
                target.copy_(param)
        teacher_buffers = dict(self.module.named_buffers())
        for name, buffer in student.named_buffers():
            target = teacher_buffers[name]
            if self.buffers == "average" and target.is_floating_point():
                target.lerp_(buffer.to(target.dtype), 1 - momentum)
            else:
                target.copy_(buffer)
        if torch_dist.is_available() and torch_dist.is_initialized():
            for target in teacher_buffers.values():
                torch_dist.broadcast(target, src=0)
        self.last_step = step
        return momentum

    def state_dict(self) -> dict[str, Any]:
        """Teacher weights and the step of the latest update."""
        return {"module": self.module.state_dict(), "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (strict: every teacher weight must be there)."""
        self.module.load_state_dict(state["module"])
        self.last_step = int(state["last_step"])
