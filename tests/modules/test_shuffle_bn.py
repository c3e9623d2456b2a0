"""MoCo's shuffled BN: keys come back in order, and each sample's BN statistics are those of its random group."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from contrastlab.modules.distributed import shuffled_bn_forward
from tests.conftest import free_port


def test_one_process_splits_emulate_devices():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(1, affine=False)
    x = torch.randn(8, 1)
    out = shuffled_bn_forward(bn, x, splits=2)
    # Each half of the shuffled batch was normalised by its own statistics: find each sample's group.
    groups = []
    for i in range(8):
        matches = [
            g for g in torch.combinations(torch.arange(8), 4) if i in g and torch.allclose(out[i], bn_of(x, g, i))
        ]
        assert matches, f"sample {i} was not normalised by any group of 4"
        groups.append(matches)
    plain = nn.BatchNorm1d(1, affine=False)(x)
    assert not torch.allclose(out, plain)


def bn_of(x, group, i):
    members = x[group]
    return (x[i] - members.mean()) / torch.sqrt(members.var(unbiased=False) + 1e-5)


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
        bn = nn.BatchNorm1d(1, affine=False)
        normalised = shuffled_bn_forward(bn, x[:, :1])
        torch.save({"keys": keys, "x": x, "normalised": normalised}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_ranks_shuffle_across_ranks_and_restore_order(tmp_path):
    port = free_port()
    out = str(tmp_path / "keys")
    mp.spawn(worker, args=(port, out), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}")
        assert torch.allclose(got["keys"], got["x"].sum(dim=1, keepdim=True).expand(3, 2))  # own samples, in order
    # Each rank normalised 3 samples drawn from both ranks' batches: outputs are consistent with some group.
    x_all = torch.cat([torch.load(f"{out}.{r}")["x"][:, :1] for r in (0, 1)])
    normalised = torch.cat([torch.load(f"{out}.{r}")["normalised"] for r in (0, 1)])
    for i in range(6):
        assert any(
            i in g and torch.allclose(normalised[i], bn_of(x_all, g, i), atol=1e-5)
            for g in torch.combinations(torch.arange(6), 3)
        )
