"""The training samples and the loader that batches them, with or without unlabeled frames.

Without a ``data.unlabeled`` section the training set is the keyframe info file and the
loader is the plain per-epoch shuffle (``renderlss.train.sampler.EpochSampler``). With one,
the training set also holds the unlabeled records (the files of ``data.unlabeled.infos``
and the keyframes of the scenes that ``keyframe_fraction`` marks), and every batch holds
``batch_size / (1 + ratio)`` labeled samples followed by the unlabeled rest
(``renderlss.train.mixing_sampler.MixingBatchSampler``). Either way a batch carries
``labeled`` [B] bool, and ``TrainingLoader.batches(start)`` resumes mid-epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from renderlss.data.collate import collate
from renderlss.data.config import DataConfig
from renderlss.data.dataset import OccDataset
from renderlss.data.unlabeled import is_labeled, mark_unlabeled_keyframes, strip_labels
from renderlss.records.infos import load_infos
from renderlss.train.distributed import DistInfo
from renderlss.train.mixing_sampler import MixingBatchSampler
from renderlss.train.sampler import EpochSampler


def training_records(config: DataConfig) -> tuple[dict, list[dict]]:
    """``(metadata, records)`` of the training set: the keyframes of ``data.train_infos``
    (those of the scenes ``data.unlabeled.keyframe_fraction`` picks stripped of their labels),
    then the records of every ``data.unlabeled.infos`` file, all unlabeled.

    Raises:
        ValueError: an unlabeled info file of another dataroot (unless ``data.dataroot`` is
            set) or a token that two records share, naming the file.
    """
    metadata, records = load_infos(config.train_infos)
    unlabeled = config.unlabeled
    if unlabeled.keyframe_fraction > 0:
        records = mark_unlabeled_keyframes(records, unlabeled.keyframe_fraction, unlabeled.seed)
    tokens = {info["token"] for info in records}
    for path in unlabeled.infos:
        extra_metadata, extra = load_infos(path)
        root, extra_root = metadata.get("dataroot", ""), extra_metadata.get("dataroot", "")
        if not config.dataroot and root != extra_root:
            raise ValueError(
                f"{path}: field 'dataroot' is {extra_root!r}, {config.train_infos} has {root!r}; "
                "set data.dataroot when both name the same files from different places"
            )
        for info in extra:
            if info["token"] in tokens:
                raise ValueError(f"{path}: sample {info['token']} is already in the training set")
            tokens.add(info["token"])
        records = records + [strip_labels(info) for info in extra]
    return metadata, records


def training_dataset(config: DataConfig) -> OccDataset:
    """The training :class:`OccDataset` (augmenting) over :func:`training_records`."""
    dataset = OccDataset(training_records(config), config, train=True)
    # Errors name the files the records came from.
    dataset.source = ", ".join([config.train_infos, *config.unlabeled.infos])
    return dataset


@dataclass
class TrainingLoader:
    """A training dataset, the sampler that orders it and the DataLoader over both."""

    dataset: OccDataset
    sampler: EpochSampler | MixingBatchSampler
    loader: DataLoader
    batches_per_epoch: int

    def batches(self, start_batch: int = 0) -> Iterator[dict]:
        """Batches epoch after epoch, starting ``start_batch`` batches into the run."""
        epoch, skip = divmod(start_batch, self.batches_per_epoch)
        while True:
            # EpochSampler skips samples, the batch sampler whole batches.
            per_skip = self.loader.batch_size if isinstance(self.sampler, EpochSampler) else 1
            self.sampler.set_epoch(epoch, skip * per_skip)
            self.dataset.set_epoch(epoch)
            yield from self.loader
            epoch, skip = epoch + 1, 0


def make_training_loader(config: DataConfig, seed: int, dist: DistInfo) -> TrainingLoader:
    """The training loader of a run: mixed labeled/unlabeled batches when ``data.unlabeled``
    is configured, else the plain shuffle; ``seed`` orders the samples (``train.seed``).

    Workers are not persistent: each epoch forks them anew from the dataset, so they see the
    epoch that ``OccDataset.set_epoch`` selected for the augmentation draws. Worker seeds
    come from a generator of the loader's own, not from the global torch stream.

    Raises:
        ValueError: too few samples for one batch on every process.
    """
    if not config.unlabeled.enabled:
        dataset = OccDataset(config.train_infos, config, train=True)
        sampler = EpochSampler(len(dataset), True, seed, dist.rank, dist.world_size)
        batches_per_epoch = len(sampler) // config.batch_size
        loader_args = dict(batch_size=config.batch_size, sampler=sampler, drop_last=True)
    else:
        dataset = training_dataset(config)
        flags = [is_labeled(dataset.infos[i]) for i in range(len(dataset))]
        labeled = [i for i, flag in enumerate(flags) if flag]
        unlabeled = [i for i, flag in enumerate(flags) if not flag]
        per_batch = config.unlabeled.labeled_per_batch(config.batch_size)
        sampler = MixingBatchSampler(
            labeled,
            unlabeled,
            per_batch,
            config.batch_size - per_batch,
            seed,
            dist.rank,
            dist.world_size,
        )
        batches_per_epoch = sampler.batches_per_epoch
        loader_args = dict(batch_sampler=sampler)
    if batches_per_epoch < 1:
        raise ValueError(
            f"{len(dataset)} training samples make no full batch of {config.batch_size} per "
            "process: lower data.batch_size"
        )
    loader = DataLoader(
        dataset,
        num_workers=config.workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
        **loader_args,
    )
    return TrainingLoader(dataset, sampler, loader, batches_per_epoch)
