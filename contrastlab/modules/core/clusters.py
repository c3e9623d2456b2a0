"""Pseudo-labels from clustering the training set's embeddings (G-SimCLR's): a bank of each sample's latest
embedding, by dataset index, and spherical k-means over it.

Bank and labels are registered buffers, so a checkpoint holds them and a resumed run clusters what an
uninterrupted one would. Callers record embeddings and indices already gathered from every rank, so every rank
holds the same bank; the clustering runs on rank 0 and its labels are broadcast, so every rank agrees on them
whatever its floating-point order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.modules.core.distributed import rank, world_size


@torch.no_grad()
def spherical_kmeans(x: Tensor, k: int, iterations: int = 20, generator: torch.Generator | None = None) -> Tensor:
    """Cluster of each row of `x` (M, D) among k <= M clusters by cosine similarity: k-means++ seeding (Arthur &
    Vassilvitskii 2007) with the distance 1 - cos, then Lloyd iterations with unit-norm centres."""
    x = F.normalize(x.float(), dim=1)
    m = x.shape[0]
    first = torch.randint(m, (1,), generator=generator).item()
    centres = [x[first]]
    distance = (1 - x @ x[first]).clamp(min=0)
    for _ in range(1, k):
        # a row already a centre has distance 0 and is not drawn again while any other row is left
        weights = distance if distance.sum() > 0 else torch.ones_like(distance)
        pick = torch.multinomial(weights, 1, generator=generator).item()
        centres.append(x[pick])
        distance = torch.minimum(distance, (1 - x @ x[pick]).clamp(min=0))
    centres = torch.stack(centres)
    assignment = (x @ centres.T).argmax(dim=1)
    for _ in range(iterations):
        sums = torch.zeros_like(centres).index_add_(0, assignment, x)
        empty = sums.norm(dim=1) == 0
        centres = torch.where(empty[:, None], centres, F.normalize(sums, dim=1))  # an empty cluster keeps its centre
        new = (x @ centres.T).argmax(dim=1)
        if torch.equal(new, assignment):
            break
        assignment = new
    return assignment


class PseudoLabels(nn.Module):
    """The latest embedding (`dim`) of each training sample by its dataset index, and its cluster (-1: none yet).

    The buffers grow to the largest index recorded, so no training-set size is needed up front, and a checkpoint
    loads into a fresh module of any size.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("bank", torch.zeros(0, dim))
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))

    def _grow(self, size: int) -> None:
        old = self.labels.shape[0]
        if size <= old:
            return
        extra = size - old
        self.bank = torch.cat([self.bank, self.bank.new_zeros(extra, self.bank.shape[1])])
        self.seen = torch.cat([self.seen, self.seen.new_zeros(extra)])
        self.labels = torch.cat([self.labels, self.labels.new_full((extra,), -1)])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "labels")
        if saved is not None and saved.shape[0] != self.labels.shape[0]:  # the checkpoint's size, larger or smaller
            self.bank = self.bank.new_zeros(saved.shape[0], self.bank.shape[1])
            self.seen = self.seen.new_zeros(saved.shape[0])
            self.labels = self.labels.new_full((saved.shape[0],), -1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def record(self, index: Tensor, z: Tensor) -> None:
        """Keep z (N, dim) as the embeddings of the samples `index` (N,), gathered from every rank."""
        self._grow(int(index.max()) + 1)
        self.bank[index] = F.normalize(z.detach(), dim=1).to(self.bank.dtype)
        self.seen[index] = True

    def of(self, index: Tensor) -> Tensor:
        """The clusters of the samples `index`; -1 for those not clustered yet."""
        self._grow(int(index.max()) + 1)
        return self.labels[index]

    @torch.no_grad()
    def refresh(self, k: int, seed: int) -> int:
        """Cluster every recorded sample into min(k, recorded) clusters; returns how many samples were clustered."""
        seen = self.seen.nonzero().squeeze(1)
        if rank() == 0 and seen.numel():
            generator = torch.Generator().manual_seed(seed)
            labels = torch.full_like(self.labels, -1)
            labels[seen] = spherical_kmeans(self.bank[seen].cpu(), min(k, seen.numel()), generator=generator).to(
                labels.device
            )
            self.labels.copy_(labels)
        if world_size() > 1:
            dist.broadcast(self.labels, src=0)
        return int(seen.numel())
