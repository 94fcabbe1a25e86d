"""Batching samples of :class:`renderlss.data.dataset.OccDataset`."""

from __future__ import annotations

from typing import Any

import torch


def _collate_values(values: list[Any]) -> Any:
    """Tensors of one shape are stacked on a new first axis; tensors of differing shapes
    (e.g. a varying number of rays) and anything else stay a list; dicts collate per key."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        if all(isinstance(v, torch.Tensor) and v.shape == first.shape for v in values):
            return torch.stack(values)
        return list(values)
    if isinstance(first, dict):
        return {key: _collate_values([v[key] for v in values]) for key in first}
    return list(values)


def collate(samples: list[dict]) -> dict:
    """Batch sample dicts: tensors stacked to ``[B, ...]``, ``targets`` collated per key,
    ``meta`` kept as a list of the per-sample dicts, and ``labeled`` [B] bool from each
    ``meta["labeled"]`` (True where a sample's meta lacks it)."""
    if not samples:
        raise ValueError("collate: empty batch")
    keys = set(samples[0])
    for i, sample in enumerate(samples[1:], start=1):
        if set(sample) != keys:
            raise ValueError(
                f"collate: sample {i} has keys {sorted(sample)}, sample 0 has {sorted(keys)}"
            )
    batch = {
        key: [s[key] for s in samples]
        if key == "meta"
        else _collate_values([s[key] for s in samples])
        for key in samples[0]
    }
    if "meta" in batch:
        batch["labeled"] = torch.tensor([bool(m.get("labeled", True)) for m in batch["meta"]])
    return batch


def to_device(batch, device: torch.device):
    """Tensors of a (nested) batch moved to ``device``; ``meta`` and non-tensors as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: v if k == "meta" else to_device(v, device) for k, v in batch.items()}
    return batch
