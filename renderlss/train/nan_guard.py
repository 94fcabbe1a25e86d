"""Skipping optimizer steps whose loss terms or gradient norm are not finite.

One bad batch (a degenerate sample, an overflow) should not destroy a run, but a model that
keeps producing NaN must stop it loudly. Policy: a step with a non-finite loss term or
gradient norm is skipped (gradients zeroed, no optimizer step) and logged with the bad
terms; after ``max_consecutive`` skipped steps in a row the run stops with an error naming
the steps, their sample tokens and their loss terms.

In a distributed run the decision is shared: if any rank sees a non-finite value, every rank
skips, so the model replicas never diverge. With a mixed-precision ``GradScaler`` gradient
overflow is expected while the scale calibrates and the scaler already skips those steps:
pass ``grad_norm=None`` there and let the guard watch the loss terms only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from renderlss.train.distributed import all_reduce_sum


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with non-finite loss terms or gradient norm."""


@dataclass(frozen=True)
class SkippedStep:
    """What a skipped step looked like on this process."""

    step: int
    terms: dict[str, float]
    bad_terms: list[str]  # names of non-finite terms, plus "grad_norm" when it was
    sample_tokens: list[str]

    def describe(self) -> str:
        terms = ", ".join(f"{name}={value:.6g}" for name, value in self.terms.items())
        bad = ", ".join(self.bad_terms) or "none here (non-finite on another rank)"
        return (
            f"step {self.step}: non-finite {bad}; loss terms {{{terms}}}; "
            f"samples {self.sample_tokens}"
        )


def _as_float(value: torch.Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def non_finite_names(values: Mapping[str, torch.Tensor | float]) -> list[str]:
    """Names of the entries whose (scalar) value is NaN or infinite."""
    return [name for name, value in values.items() if not math.isfinite(_as_float(value))]


class NanGuard:
    """Decides per step whether the optimizer may step.

    Args:
        max_consecutive: skipped steps in a row after which :meth:`check` raises.
        log: where skip messages go.
    """

    def __init__(self, max_consecutive: int, log: Callable[[str], None] = print) -> None:
        if max_consecutive < 1:
            raise ValueError(f"NanGuard: max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.log = log
        self.consecutive = 0
        self.skipped_total = 0
        self.recent: list[SkippedStep] = []

    def check(
        self,
        step: int,
        terms: Mapping[str, torch.Tensor | float],
        grad_norm: torch.Tensor | float | None,
        sample_tokens: Sequence[str],
        optimizer: torch.optim.Optimizer,
    ) -> bool:
        """Whether to run ``optimizer.step()`` for this step; on False the gradients of
        ``optimizer`` have been zeroed and the step is recorded.

        Call it after the backward pass (and gradient clipping, whose return value is
        ``grad_norm``) on every rank: in a distributed run it is a collective.

        Raises:
            NonFiniteLossError: at the ``max_consecutive``-th skipped step in a row.
        """
        values = {name: _as_float(value) for name, value in terms.items()}
        bad = non_finite_names(values)
        if grad_norm is not None and not math.isfinite(_as_float(grad_norm)):
            bad.append("grad_norm")
        # The flag lives where the parameters do, which is where the backend can reduce it.
        device = optimizer.param_groups[0]["params"][0].device
        bad_anywhere = all_reduce_sum(torch.tensor(float(bool(bad)), device=device)).item() > 0
        if not bad_anywhere:
            self.consecutive = 0
            self.recent.clear()
            return True
        optimizer.zero_grad(set_to_none=True)
        self.consecutive += 1
        self.skipped_total += 1
        skipped = SkippedStep(step, values, bad, list(sample_tokens))
        self.recent = (self.recent + [skipped])[-self.max_consecutive :]
        self.log(
            f"skipped optimizer step ({self.consecutive}/{self.max_consecutive} in a row) at "
            + skipped.describe()
        )
        if self.consecutive >= self.max_consecutive:
            history = "\n  ".join(s.describe() for s in self.recent)
            raise NonFiniteLossError(
                f"training stopped at step {step}: {self.consecutive} consecutive steps with "
                f"non-finite loss terms or gradient norm:\n  {history}"
            )
        return False

    def state_dict(self) -> dict[str, int]:
        """Counters to keep across a resume."""
        return {"consecutive": self.consecutive, "skipped_total": self.skipped_total}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore the counters of :meth:`state_dict`."""
        self.consecutive = int(state["consecutive"])
        self.skipped_total = int(state["skipped_total"])
