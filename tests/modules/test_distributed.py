"""Gathering with gradients over two real gloo processes gives the gradient of the global-batch loss."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from contrastlab.modules.core.distributed import gather_with_grad
from contrastlab.modules.losses import nt_xent
from tests.conftest import free_port


def problem():
    torch.manual_seed(0)
    return nn.Linear(6, 4), torch.randn(8, 6), torch.randn(8, 6)


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model, x1, x2 = problem()
        ddp = nn.parallel.DistributedDataParallel(model)
        part = slice(rank * 4, rank * 4 + 4)
        z1, z2 = gather_with_grad(ddp(x1[part])), gather_with_grad(ddp(x2[part]))
        assert z1.shape == (8, 4)
        nt_xent(z1, z2, 0.5).backward()
        if rank == 0:
            torch.save({"weight": model.weight.grad, "bias": model.bias.grad, "z1": z1.detach()}, out)
    finally:
        dist.destroy_process_group()


def test_gathered_loss_gradient_equals_single_process_global_batch(tmp_path):
    port = free_port()
    out = str(tmp_path / "grads.pt")
    mp.spawn(worker, args=(port, out), nprocs=2, join=True)
    got = torch.load(out)

    model, x1, x2 = problem()
    assert torch.allclose(got["z1"], model(x1), atol=1e-6)  # rank order preserved
    nt_xent(model(x1), model(x2), 0.5).backward()
    assert torch.allclose(got["weight"], model.weight.grad, atol=1e-6)
    assert torch.allclose(got["bias"], model.bias.grad, atol=1e-6)


def test_single_process_gather_is_identity():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x
