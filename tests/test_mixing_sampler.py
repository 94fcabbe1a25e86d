"""MixingBatchSampler: batch composition, rank shards, mid-epoch resume and determinism,
checked against the properties themselves and an uninterrupted run."""

from __future__ import annotations

import itertools

import pytest

from renderlss.train.mixing_sampler import MixingBatchSampler

LABELED = list(range(0, 40, 2))  # 20 labeled dataset indices (even)
UNLABELED = list(range(1, 61, 2))  # 30 unlabeled dataset indices (odd)


def sampler(rank=0, world_size=1, seed=7, labeled=2, unlabeled=3) -> MixingBatchSampler:
    return MixingBatchSampler(LABELED, UNLABELED, labeled, unlabeled, seed, rank, world_size)


def epoch_batches(s: MixingBatchSampler, epoch: int, skip: int = 0) -> list[list[int]]:
    s.set_epoch(epoch, skip)
    return list(s)


def test_every_batch_has_the_composition():
    s = sampler()
    for epoch in range(3):
        batches = epoch_batches(s, epoch)
        assert len(batches) == s.batches_per_epoch == 10 == len(s)
        for batch in batches:
            assert len(batch) == 5
            assert all(i in LABELED for i in batch[:2]) and all(i in UNLABELED for i in batch[2:])
        # One epoch is one pass over the labeled pool.
        assert sorted(i for b in batches for i in b[:2]) == LABELED


def test_ranks_are_disjoint_and_take_the_same_steps():
    world = 3
    shards = [sampler(rank, world) for rank in range(world)]
    for epoch in range(2):
        per_rank = [epoch_batches(s, epoch) for s in shards]
        assert {len(b) for b in per_rank} == {20 // world // 2}
        labeled = [i for batches in per_rank for b in batches for i in b[:2]]
        unlabeled = [i for batches in per_rank for b in batches for i in b[2:]]
        assert len(set(labeled)) == len(labeled)  # no labeled sample on two ranks
        # A step of 3 ranks takes 9 unlabeled samples: a cycle is 27 of the 30, in 3 steps.
        for step in range(len(per_rank[0])):
            at_step = [i for batches in per_rank for i in batches[step][2:]]
            assert len(set(at_step)) == len(at_step) == 9
        if epoch == 0:
            assert len(set(unlabeled)) == len(unlabeled) == 27


def test_unlabeled_stream_covers_the_pool_before_repeating():
    s = sampler(unlabeled=3)
    stream = [i for epoch in range(3) for b in epoch_batches(s, epoch) for i in b[2:]]
    for cycle in range(len(stream) // len(UNLABELED)):
        assert sorted(stream[cycle * 30 : (cycle + 1) * 30]) == UNLABELED
    assert stream[:30] != stream[30:60]  # each cycle its own order


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_reads_the_batches_of_an_uninterrupted_run(world_size):
    for rank in range(world_size):
        whole = [b for epoch in range(3) for b in epoch_batches(sampler(rank, world_size), epoch)]
        per_epoch = sampler(rank, world_size).batches_per_epoch
        for start in (0, 1, per_epoch - 1, per_epoch, per_epoch + 3, 2 * per_epoch + 1):
            resumed = sampler(rank, world_size)  # a fresh process
            epoch, skip = divmod(start, per_epoch)
            run = epoch_batches(resumed, epoch, skip)
            run += [b for e in range(epoch + 1, 3) for b in epoch_batches(resumed, e)]
            assert run == whole[start:]


def test_deterministic_in_the_seed():
    runs = [[epoch_batches(sampler(seed=seed), e) for e in range(2)] for seed in (7, 7, 8)]
    assert runs[0] == runs[1] != runs[2]
    # Epochs differ, in the labeled order too.
    assert [b[:2] for b in runs[0][0]] != [b[:2] for b in runs[0][1]]


def test_labeled_only_batches_and_pool_checks():
    s = sampler(labeled=4, unlabeled=0)
    assert all(len(b) == 4 and all(i in LABELED for i in b) for b in epoch_batches(s, 0))
    with pytest.raises(ValueError, match="no batch"):
        sampler(world_size=11, labeled=2)  # 20 // 11 = 1 labeled sample per rank
    with pytest.raises(ValueError, match="cannot fill"):
        MixingBatchSampler(LABELED, [], 2, 1, seed=0)
    with pytest.raises(ValueError, match="cannot fill"):
        MixingBatchSampler(LABELED, UNLABELED, 2, 16, seed=0, world_size=2)
    with pytest.raises(ValueError, match="skip"):
        sampler().set_epoch(0, 11)


def test_composition_brute_force_over_sizes():
    for labeled, unlabeled, world in itertools.product((1, 3), (0, 1, 4), (1, 2)):
        shards = [sampler(r, world, labeled=labeled, unlabeled=unlabeled) for r in range(world)]
        batches = [epoch_batches(s, 1) for s in shards]
        expected_steps = len(LABELED) // world // labeled
        assert all(len(b) == expected_steps for b in batches)
        assert all(len(x) == labeled + unlabeled for b in batches for x in b)
