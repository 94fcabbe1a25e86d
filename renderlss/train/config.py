"""Schema of the ``train = dict(...)`` section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of a training run."""

    work_dir: str = "work_dirs/run"
    max_steps: int = 1000
    lr: float = 2e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100  # linear warm-up from 0, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.01
    grad_clip: float = 35.0  # max gradient norm; 0 disables clipping
    log_interval: int = 10
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...

    def validate(self, where: str) -> None:
        if self.max_steps < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"{where}: max_steps >= 1, lr > 0 and warmup_steps >= 0 required")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"{where}.min_lr_ratio: must be in [0, 1]")
        if self.grad_clip < 0 or self.log_interval < 1:
            raise ValueError(f"{where}: grad_clip >= 0 and log_interval >= 1 required")
