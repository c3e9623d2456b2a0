"""Cross-rank gathering (with gradients, so a loss over the global batch trains every rank) and MoCo's shuffled BN."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def gather_with_grad(x: Tensor) -> Tensor:
    """x from every rank, concatenated in rank order, differentiable with respect to this rank's part.

    Every rank computes the same loss on the gathered batch; the backward all-reduces (sums) the
    gradients of each rank's part, and DDP then averages parameter gradients over ranks, so each
    parameter receives exactly the gradient of the one global loss.
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """x from every rank, concatenated in rank order, without gradient (for keys and memories)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def shuffled_bn_forward(encoder: nn.Module, x: Tensor, splits: int = 1) -> Tensor:
    """encoder(x), with each sample's BatchNorm statistics drawn from a random subset of the global batch.

    MoCo's shuffling BN (He et al. 2020, sec. 3.3): the query and key of a sample must not share batch
    statistics, or the key encoder leaks which sample is which and the pretext task is solved through
    BN. As in the official code, the global batch is gathered, permuted by one permutation drawn on
    rank 0 and broadcast, each rank encodes its slice of the permuted batch, and the keys are gathered
    and put back in order. `splits` also encodes each rank's slice in that many chunks, so one process
    emulates `splits` devices (MoCo's SplitBatchNorm); on one process with splits=1 it is a plain forward.
    Needs equal batches on every rank (the train loader drops the last partial batch).
    """
    n = x.shape[0]
    x_all = gather_no_grad(x)
    permutation = torch.randperm(x_all.shape[0], device=x.device)
    if world_size() > 1:
        dist.broadcast(permutation, src=0)
    mine = permutation[rank() * n : (rank() + 1) * n]
    keys = torch.cat([encoder(chunk) for chunk in x_all[mine].chunk(splits)])
    keys_all = gather_no_grad(keys)  # row j is the key of sample permutation[j]
    restored = torch.empty_like(keys_all)
    restored[permutation] = keys_all
    return restored[rank() * n : (rank() + 1) * n]


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """x summed over every rank (a new tensor; x itself on one process), without gradient: the cross-rank
    statistics of SwAV's Sinkhorn-Knopp and DINO's centre (`losses.clustering`)."""
    if world_size() == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total)
    return total
