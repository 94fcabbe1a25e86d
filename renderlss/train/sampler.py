"""Which samples each process reads in which order: a per-epoch shuffle that every rank
derives from (seed, epoch), sharded by rank, and startable in the middle of an epoch so that
a resumed run reads exactly the batches an uninterrupted one would have."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices of one rank for one epoch.

    Args:
        size: dataset length.
        shuffle: permute per epoch (seeded by ``seed + epoch``) or keep the order.
        seed: shared by all ranks, so they agree on the permutation.
        rank, world_size: this process's shard: positions ``rank::world_size``.
    The tail that does not divide evenly among ranks is dropped, so every rank takes the same
    number of steps (DDP needs that).
    """

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        if size < world_size:
            raise ValueError(f"{size} samples cannot be shared by {world_size} processes")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch, and how many of this rank's first indices to leave out."""
        self.epoch = epoch
        self.skip = skip

    def __len__(self) -> int:
        return self.size // self.world_size - self.skip

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        usable = self.size // self.world_size * self.world_size
        return iter(order[self.rank : usable : self.world_size][self.skip :])
