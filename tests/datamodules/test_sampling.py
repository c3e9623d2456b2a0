"""The resumable training order: every sample once an epoch, the same order after a resume, on any world size."""

import pytest
import torch
from torch.utils.data import DataLoader

from contrastlab.datamodules.base import TensorSamples
from contrastlab.datamodules.sampling import ResumableSampler


def epoch_batches(size: int, batch: int, world: int, epoch: int, consumed: int = 0, seed: int = 7) -> list[list[int]]:
    """Global batches of one epoch (each rank's batch i, concatenated), from `consumed` samples on."""
    per_rank = []
    for rank in range(world):
        sampler = ResumableSampler(size, batch, seed, world, rank)
        sampler.set_epoch(epoch)
        if consumed:
            sampler.resume_at(epoch, consumed)
        loader = DataLoader(TensorSamples(torch.arange(size)), batch_size=batch, sampler=sampler, drop_last=True)
        per_rank.append([b["idx"].tolist() for b in loader])
    return [sum((ranks[i] for ranks in per_rank), []) for i in range(len(per_rank[0]))]


@pytest.mark.parametrize(("size", "batch", "world"), [(100, 8, 1), (100, 8, 2), (97, 5, 3)])
def test_each_epoch_sees_distinct_samples_in_a_new_order(size, batch, world):
    first, second = epoch_batches(size, batch, world, 0), epoch_batches(size, batch, world, 1)
    flat = sum(first, [])
    assert len(first) == size // (batch * world) and len(flat) == len(set(flat))
    assert flat != sum(second, []) and first == epoch_batches(size, batch, world, 0)


@pytest.mark.parametrize("world", [1, 2])
def test_a_resume_continues_the_epoch_where_it_stopped(world):
    whole = epoch_batches(100, 4, world, epoch=3)
    done = 5
    rest = epoch_batches(100, 4, world, epoch=3, consumed=done * 4 * world)
    assert rest == whole[done:]


def test_len_is_the_whole_epoch_even_when_resumed():
    # Lightning counts a resumed epoch's batches from its start.
    sampler = ResumableSampler(100, 4, 0, num_replicas=2, rank=1)
    sampler.resume_at(0, 40)
    assert len(sampler) == 12 * 4 and len(list(sampler)) == 7 * 4


@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 2), (2, 3)])
def test_another_world_size_finishes_the_epoch_from_the_same_order(before, after):
    size, batch, seed = 120, 4, 7
    order = ResumableSampler(size, batch, seed).order(0).tolist()
    seen = sum(epoch_batches(size, batch, before, 0, seed=seed)[:3], [])  # three global batches, then the kill
    assert sorted(seen) == sorted(order[: len(seen)])
    rest = epoch_batches(size, batch, after, 0, consumed=len(seen), seed=seed)
    kept = len(seen) - len(seen) % (batch * after)  # rounded down to a whole batch of the new size
    assert len(rest) == (size - kept) // (batch * after)
    flat = sum(rest, [])
    assert sorted(flat) == sorted(order[kept : kept + len(flat)])
    assert len(set(seen) & set(flat)) == len(seen) - kept < batch * after  # at most one batch seen twice


def test_set_epoch_after_a_resume_keeps_the_position_and_a_new_epoch_starts_over():
    sampler = ResumableSampler(64, 4, 0)
    sampler.resume_at(2, 16)
    sampler.set_epoch(2)  # Lightning sets the epoch it resumed in: the position stays
    assert len(list(sampler)) == 48
    sampler.set_epoch(3)
    assert len(list(sampler)) == 64
