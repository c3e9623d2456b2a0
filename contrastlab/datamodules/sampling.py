"""The training order as a pure function of (seed, epoch, position), so a killed run resumes mid-epoch exactly.

Lightning restarts a plain DataLoader's epoch from its first batch; a resumed run would then see some
samples of that epoch twice and others never. Here each epoch's order is one global permutation drawn
from `seed + epoch`, rank r of R takes every R-th index of it, and a resume skips the samples the
interrupted epoch had already consumed. Because the position is counted in global samples, the same
checkpoint resumes on another number of processes too.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Shuffled, rank-sharded indices of one epoch, starting after `consumed` global samples.

    A DistributedSampler subclass so that Lightning keeps it under DDP instead of wrapping it.
    `__len__` is the full epoch's share of this rank, as Lightning counts batches from the start of
    the epoch (a resumed epoch's batch index carries on from the checkpoint).
    """

    def __init__(self, size: int, batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.consumed = 0  # global samples of `epoch` already trained on
        self.shuffle, self.drop_last = True, True

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.num_replicas

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.global_batch

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:  # Lightning sets the current epoch again after a resume
            self.epoch, self.consumed = epoch, 0

    def resume_at(self, epoch: int, consumed: int) -> None:
        """Start the next iteration `consumed` global samples into `epoch`, rounded down to a whole global batch."""
        self.epoch = epoch
        self.consumed = min(consumed - consumed % self.global_batch, self.batches_per_epoch * self.global_batch)

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[int]:
        usable = self.batches_per_epoch * self.global_batch
        remaining = self.order(self.epoch)[self.consumed : usable]
        self.consumed = 0  # a later pass over the same epoch number starts from its beginning
        return iter(remaining[self.rank :: self.num_replicas].tolist())
