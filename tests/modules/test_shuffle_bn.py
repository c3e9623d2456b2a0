"""MoCo's shuffled BN: keys come back in order, and each sample's BN statistics are those of a random group of the
global batch, the groups drawn afresh each call and, across ranks, mixing the ranks' samples."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from contrastlab.modules.core.distributed import shuffled_bn_forward
from tests.conftest import free_port

CALLS = 8  # forwards whose groups are recovered: a shuffle draws many different groupings among them


def bn_partition(x: torch.Tensor, out: torch.Tensor, size: int) -> frozenset:
    """The groups of `size` samples whose BatchNorm statistics normalised `out`, recovered from the outputs: each
    sample is normalised by exactly one group that holds it, and the groups partition the batch."""
    groups = torch.combinations(torch.arange(len(x)), size)  # (G, size)
    members = x[groups]  # (G, size, channels)
    mean, var = members.mean(1, keepdim=True), members.var(1, unbiased=False, keepdim=True)
    normalised = (x[None] - mean) / torch.sqrt(var + 1e-5)  # (G, N, channels): each sample by each group
    holds = torch.zeros(len(groups), len(x), dtype=torch.bool).scatter_(1, groups, True)
    fits = holds & ((normalised - out[None]).abs().amax(-1) <= 1e-5 + 1e-5 * out[None].abs().amax(-1))
    group_of = []
    for i in range(len(x)):
        matches = [frozenset(groups[g].tolist()) for g in fits[:, i].nonzero().flatten().tolist()]
        assert len(matches) == 1, f"sample {i} was normalised by {len(matches)} groups of {size}, not one"
        group_of.append(matches[0])
    assert all(group_of[j] == group for group in group_of for j in group), f"not a partition: {group_of}"
    return frozenset(group_of)


def test_one_process_splits_emulate_devices_with_fresh_random_groups():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4, affine=False)
    x = torch.randn(8, 4)  # 4 channels: one group's statistics match a sample, no other group's
    partitions = [bn_partition(x, shuffled_bn_forward(bn, x, splits=2), 4) for _ in range(CALLS)]
    contiguous = frozenset({frozenset(range(4)), frozenset(range(4, 8))})  # the batch's halves, unshuffled
    assert sum(p != contiguous for p in partitions) >= CALLS // 2, partitions  # 34 of the 35 splits mix the halves
    assert len(set(partitions)) >= CALLS // 2, partitions  # drawn afresh each call


def test_one_process_one_split_is_a_plain_forward():
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = torch.randn(10, 3)
    assert torch.allclose(shuffled_bn_forward(bn, x), bn(x), atol=1e-6)


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different local streams: only rank 0's permutation may count
        linear = nn.Linear(3, 2)
        torch.nn.init.constant_(linear.weight, 1.0)
        torch.nn.init.zeros_(linear.bias)
        x = torch.arange(18.0).view(6, 3)[rank * 3 : rank * 3 + 3]
        keys = shuffled_bn_forward(linear, x)
        data = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))[rank * 3 : rank * 3 + 3]
        bn = nn.BatchNorm1d(4, affine=False)
        normalised = torch.stack([shuffled_bn_forward(bn, data) for _ in range(CALLS)])
        torch.save({"keys": keys, "x": x, "data": data, "normalised": normalised}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_ranks_shuffle_across_ranks_and_restore_order(tmp_path):
    port = free_port()
    out = str(tmp_path / "keys")
    mp.spawn(worker, args=(port, out), nprocs=2, join=True)
    got = [torch.load(f"{out}.{rank}") for rank in (0, 1)]
    for rank in (0, 1):
        keys, x = got[rank]["keys"], got[rank]["x"]
        assert torch.allclose(keys, x.sum(dim=1, keepdim=True).expand(3, 2))  # own samples, in order
    # Each rank normalised 3 samples of the global batch of 6: the two groups partition it (one permutation for
    # both ranks), and they mix the ranks' samples (a shuffle across ranks, not within each).
    data = torch.cat([g["data"] for g in got])
    normalised = torch.cat([g["normalised"] for g in got], dim=1)
    partitions = [bn_partition(data, normalised[c], 3) for c in range(CALLS)]
    by_rank = frozenset({frozenset({0, 1, 2}), frozenset({3, 4, 5})})
    assert sum(p != by_rank for p in partitions) >= CALLS // 2, partitions  # 9 of the 10 splits mix the ranks
