"""Single-process training loop: data -> model -> rendered losses -> AdamW step."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from renderlss.data.collate import collate
from renderlss.data.dataset import OccDataset
from renderlss.experiment import ExperimentConfig
from renderlss.models.losses import class_weights_from_counts
from renderlss.models.objective import loss_terms
from renderlss.models.occupancy_net import OccupancyNet


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def load_class_weights(config: ExperimentConfig) -> torch.Tensor | None:
    """Semantic class weights from the class-count file of the loss config (None if unset)."""
    loss = config.model.loss
    if not loss.class_counts:
        return None
    path = Path(loss.class_counts)
    if not path.is_file():
        raise FileNotFoundError(
            f"model.loss.class_counts: {path} not found (make it with tools/class_frequencies.py)"
        )
    record = json.loads(path.read_text())
    names = record.get("class_names")
    expected = config.data.classes.occ_class_names + ["free"]
    if names != expected:
        raise ValueError(f"{path}: class_names {names} do not match the config's {expected}")
    return class_weights_from_counts(
        record["counts"],
        loss.class_weighting,
        loss.class_weight_alpha,
        loss.class_weight_max,
        loss.inv_log_offset,
    )


def to_device(batch, device: torch.device):
    """Tensors of a (nested) batch moved to ``device``; everything else as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: v if k == "meta" else to_device(v, device) for k, v in batch.items()}
    return batch


def make_loader(dataset: OccDataset, batch_size: int, workers: int, shuffle: bool) -> DataLoader:
    """A DataLoader with the project's collate; workers persist across epochs."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        drop_last=shuffle,
        persistent_workers=workers > 0,
    )


def endless(loader: DataLoader) -> Iterator[dict]:
    """Batches of ``loader`` epoch after epoch, telling the dataset which epoch it is."""
    epoch = 0
    while True:
        loader.dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def build_model(config: ExperimentConfig) -> OccupancyNet:
    """The network of an experiment config."""
    return OccupancyNet(config.model, config.data.grid, config.render)


def train(
    config: ExperimentConfig, log: Callable[[str], None] = print
) -> tuple[OccupancyNet, list[dict[str, float]]]:
    """Train for ``config.train.max_steps`` steps on ``config.data.train_infos``.

    Returns:
        the trained model and one record per step (loss terms, total, lr, time).
    """
    tc = config.train
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    device = resolve_device(tc.device)
    dataset = OccDataset(config.data.train_infos, config.data, train=True)
    loader = make_loader(dataset, config.data.batch_size, config.data.workers, shuffle=True)
    model = build_model(config).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio)
    )
    class_weights = load_class_weights(config)
    if class_weights is not None:
        class_weights = class_weights.to(device)
    history = []
    batches = endless(loader)
    for step in range(tc.max_steps):
        start = time.perf_counter()
        batch = to_device(next(batches), device)
        predictions, rendered = model(batch)
        terms = loss_terms(
            predictions,
            rendered,
            batch,
            config.model.loss,
            config.model.depth.bins,
            config.model.neck.out_stride,
            class_weights,
            config.data.classes.ignore_index,
        )
        total = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        schedule.step()
        record = {name: value.item() for name, value in terms.items()}
        record.update(loss=float(total), lr=schedule.get_last_lr()[0])
        record["time"] = time.perf_counter() - start
        history.append(record)
        if step % tc.log_interval == 0 or step == tc.max_steps - 1:
            parts = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k not in ("lr", "time"))
            lr, seconds = record["lr"], record["time"]
            log(f"step {step + 1}/{tc.max_steps} {parts} lr={lr:.2e} ({seconds:.2f}s)")
    return model, history
