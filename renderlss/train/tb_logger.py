"""TensorBoard logging that only the main process performs.

Every rank may call the same methods; on ranks other than 0 they do nothing, so training
code needs no rank checks and only one event file is written per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from renderlss.train.distributed import is_main_process


class TensorBoardLogger:
    """A ``SummaryWriter`` on the main process, nothing elsewhere.

    Args:
        log_dir: the directory for the event files (created by the main process).
        enabled: whether this process writes; defaults to ``is_main_process()``.
    """

    def __init__(self, log_dir: str | Path, enabled: bool | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = is_main_process() if enabled is None else enabled
        self._writer = SummaryWriter(str(self.log_dir)) if self.enabled else None

    def scalars(self, prefix: str, values: Mapping[str, float | torch.Tensor], step: int) -> None:
        """One scalar per entry, tagged ``prefix/name`` (``name`` alone for an empty prefix)."""
        if self._writer is None:
            return
        for name, value in values.items():
            tag = f"{prefix}/{name}" if prefix else name
            self._writer.add_scalar(tag, float(value), step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An RGB picture, ``# [H, W, 3]`` uint8."""
        if self._writer is None:
            return
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"TensorBoardLogger.image({tag!r}): expected an HxWx3 uint8 array, got "
                f"shape {image.shape} dtype {image.dtype}"
            )
        self._writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int) -> None:
        """A piece of (markdown) text, e.g. the resolved config at step 0."""
        if self._writer is not None:
            self._writer.add_text(tag, text, step)

    def flush(self) -> None:
        """Push pending events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; later calls write nothing."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
