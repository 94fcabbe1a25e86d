"""Batches of a fixed labeled:unlabeled composition, sharded by rank and resumable mid-epoch.

An epoch is one pass over the labeled pool, as with ``renderlss.train.sampler.EpochSampler``:
shuffled per epoch from ``(seed, epoch)``, positions ``rank::world_size`` per rank, the
uneven tail dropped, cut into batches of ``labeled_per_batch``. Unlabeled samples come from
an endless stream of permutations of the unlabeled pool (cycle ``c`` shuffled from
``(seed, c)``) that the ranks read in turns of ``unlabeled_per_batch`` positions, step after
step; each cycle is cut to a whole number of steps, so that the ranks of one step never
share a sample. An epoch takes as many unlabeled samples as its batches need, so the two
pools may differ in size. Every batch is a function of ``(seed, epoch, batch, rank)`` alone, which
makes a resumed run read exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

LABELED_STREAM, UNLABELED_STREAM = 0, 1


def _permutation(seed: int, stream: int, draw: int, size: int) -> np.ndarray:
    """[size] int64 permutation number ``draw`` of a stream, the same on every rank."""
    return np.random.default_rng([seed, stream, draw]).permutation(size)


class MixingBatchSampler(Sampler[list[int]]):
    """Dataset indices of one rank's batches: ``labeled_per_batch`` labeled indices, then
    ``unlabeled_per_batch`` unlabeled ones.

    Args:
        labeled, unlabeled: dataset indices of the two pools.
        labeled_per_batch: >= 1; unlabeled_per_batch: >= 0 (0 reads labeled batches only).
        seed: shared by all ranks, so they agree on the permutations.
        rank, world_size: this process's shard.
    Raises:
        ValueError: a pool too small for one batch on every rank, or unlabeled samples asked
            of an empty unlabeled pool.
    """

    def __init__(
        self,
        labeled: Sequence[int],
        unlabeled: Sequence[int],
        labeled_per_batch: int,
        unlabeled_per_batch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.labeled = np.asarray(labeled, dtype=np.int64)
        self.unlabeled = np.asarray(unlabeled, dtype=np.int64)
        if labeled_per_batch < 1 or unlabeled_per_batch < 0:
            raise ValueError(
                f"labeled_per_batch must be >= 1 and unlabeled_per_batch >= 0, got "
                f"{labeled_per_batch} and {unlabeled_per_batch}"
            )
        if len(self.labeled) // world_size < labeled_per_batch:
            raise ValueError(
                f"{len(self.labeled)} labeled samples make no batch of {labeled_per_batch} on "
                f"each of {world_size} processes"
            )
        # Unlabeled positions per step of all ranks, and per cycle (a whole number of steps).
        step_positions = unlabeled_per_batch * world_size
        self.cycle_length = len(self.unlabeled) // max(step_positions, 1) * step_positions
        if unlabeled_per_batch and not self.cycle_length:
            raise ValueError(
                f"{len(self.unlabeled)} unlabeled samples cannot fill {unlabeled_per_batch} per "
                f"batch on each of {world_size} processes"
            )
        self.labeled_per_batch = labeled_per_batch
        self.unlabeled_per_batch = unlabeled_per_batch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0

    @property
    def batches_per_epoch(self) -> int:
        """Batches of every rank in one epoch."""
        return len(self.labeled) // self.world_size // self.labeled_per_batch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch, and how many of this rank's first batches to leave out."""
        if not 0 <= skip <= self.batches_per_epoch:
            raise ValueError(f"skip {skip} outside 0..{self.batches_per_epoch}")
        self.epoch = epoch
        self.skip = skip

    def __len__(self) -> int:
        return self.batches_per_epoch - self.skip

    def _labeled_batches(self) -> np.ndarray:
        """[batches_per_epoch, labeled_per_batch] dataset indices of this rank's epoch."""
        order = _permutation(self.seed, LABELED_STREAM, self.epoch, len(self.labeled))
        count = self.batches_per_epoch * self.labeled_per_batch
        mine = order[self.rank :: self.world_size][:count]
        return self.labeled[mine].reshape(self.batches_per_epoch, self.labeled_per_batch)

    def _unlabeled_batch(self, batch: int, cache: dict[int, np.ndarray]) -> list[int]:
        """Dataset indices of the unlabeled part of this epoch's batch ``batch``.

        Stream position of slot ``j`` on rank ``r`` at global step ``s``:
        ``(s * world_size + r) * unlabeled_per_batch + j``; ranks read disjoint positions,
        and the positions of one step lie in one cycle.
        """
        size = self.cycle_length
        step = self.epoch * self.batches_per_epoch + batch
        first = (step * self.world_size + self.rank) * self.unlabeled_per_batch
        out = []
        for position in range(first, first + self.unlabeled_per_batch):
            cycle, offset = divmod(position, size)
            if cycle not in cache:
                cache.clear()  # positions only grow: an older cycle is not read again
                cache[cycle] = _permutation(self.seed, UNLABELED_STREAM, cycle, len(self.unlabeled))
            out.append(int(self.unlabeled[cache[cycle][offset]]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        labeled = self._labeled_batches()
        cache: dict[int, np.ndarray] = {}
        for batch in range(self.skip, self.batches_per_epoch):
            unlabeled = self._unlabeled_batch(batch, cache) if self.unlabeled_per_batch else []
            yield [int(i) for i in labeled[batch]] + unlabeled
