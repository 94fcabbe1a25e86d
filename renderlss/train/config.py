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
    accumulate_steps: int = 1  # micro-batches per optimizer step
    amp: bool = True  # fp16 autocast + gradient scaling on CUDA (rendering weights stay fp32)
    checkpoint_interval: int = 500  # steps between checkpoints (and one at the end)
    keep_last: int = 3  # checkpoints kept in work_dir; older ones are deleted
    max_consecutive_nan: int = 5  # non-finite steps in a row that stop the run
    image_interval: int = 500  # steps between TensorBoard image panels; 0 disables
    eval_interval: int = 0  # steps between evaluations on data.val_infos; 0 disables
    ema: bool = False  # keep an EMA teacher of the model (saved in checkpoints)
    ema_warm: int = 100  # EMA momentum min(ema_max_momentum, 1 - (1 + warm) / (step + 1 + warm))
    ema_max_momentum: float = 0.999

    def validate(self, where: str) -> None:
        if self.max_steps < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"{where}: max_steps >= 1, lr > 0 and warmup_steps >= 0 required")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"{where}.min_lr_ratio: must be in [0, 1]")
        if self.grad_clip < 0 or self.log_interval < 1:
            raise ValueError(f"{where}: grad_clip >= 0 and log_interval >= 1 required")
        if self.accumulate_steps < 1 or self.checkpoint_interval < 1 or self.keep_last < 1:
            raise ValueError(
                f"{where}: accumulate_steps, checkpoint_interval and keep_last must be >= 1"
            )
        if self.max_consecutive_nan < 1 or self.image_interval < 0 or self.eval_interval < 0:
            raise ValueError(
                f"{where}: max_consecutive_nan >= 1, image_interval and eval_interval >= 0"
            )
        if not 0 <= self.ema_max_momentum < 1 or self.ema_warm < 0:
            raise ValueError(f"{where}: ema_max_momentum in [0, 1) and ema_warm >= 0 required")
