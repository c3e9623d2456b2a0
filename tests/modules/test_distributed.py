"""Over two real gloo processes: gathering with gradients gives the gradient of the global-batch loss, and SwAV's
and DINO's all-reduced statistics are those of one process on the global batch."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from contrastlab.modules.core.distributed import all_reduce_sum, gather_with_grad
from contrastlab.modules.losses import global_mean, nt_xent, sinkhorn_knopp
from tests.conftest import free_port


def problem():
    torch.manual_seed(0)
    return nn.Linear(6, 4), torch.randn(8, 6), torch.randn(8, 6)


def worker(rank: int, port: int, out: str) -> None:
    """One two-process group for every cross-rank check of this file: starting one costs seconds."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        results = gathered_gradients(rank) | multi_crop_statistics(rank)
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def gathered_gradients(rank: int) -> dict:
    model, x1, x2 = problem()
    ddp = nn.parallel.DistributedDataParallel(model)
    part = slice(rank * 4, rank * 4 + 4)
    z1, z2 = gather_with_grad(ddp(x1[part])), gather_with_grad(ddp(x2[part]))
    assert z1.shape == (8, 4)
    nt_xent(z1, z2, 0.5).backward()
    return {"weight": model.weight.grad, "bias": model.bias.grad, "z1": z1.detach()}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    out = str(tmp_path_factory.mktemp("ranks") / "results.pt")
    mp.spawn(worker, args=(free_port(), out), nprocs=2, join=True)
    return torch.load(out)


def test_gathered_loss_gradient_equals_single_process_global_batch(two_ranks):
    got = two_ranks

    model, x1, x2 = problem()
    assert torch.allclose(got["z1"], model(x1), atol=1e-6)  # rank order preserved
    nt_xent(model(x1), model(x2), 0.5).backward()
    assert torch.allclose(got["weight"], model.weight.grad, atol=1e-6)
    assert torch.allclose(got["bias"], model.bias.grad, atol=1e-6)


def test_single_process_gather_is_identity():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


def multi_crop_problem():
    """Scores of 8 samples against 5 prototypes (cosines) and two global views' teacher outputs."""
    g = torch.Generator().manual_seed(1)
    scores = torch.nn.functional.normalize(torch.randn(8, 5, generator=g), dim=1)
    return scores, [torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)]


def multi_crop_statistics(rank: int) -> dict:
    scores, teacher = multi_crop_problem()
    part = slice(rank * 4, rank * 4 + 4)
    codes = sinkhorn_knopp(scores[part], 0.05, 3, reduce=all_reduce_sum)
    center = global_mean([t[part] for t in teacher], reduce=all_reduce_sum)
    codes_all = [torch.empty_like(codes) for _ in range(2)]
    dist.all_gather(codes_all, codes)
    return {"codes": torch.cat(codes_all), "center": center}


def test_swav_and_dino_cross_rank_statistics_equal_one_process_on_the_global_batch(two_ranks):
    """SwAV's Sinkhorn-Knopp and DINO's centre, each rank holding half the batch, with the all-reduce the methods
    pass: the codes of each rank's samples and the centre are those of one process given the whole batch."""
    got = two_ranks
    scores, teacher = multi_crop_problem()
    whole = sinkhorn_knopp(scores, 0.05, 3)
    assert torch.allclose(got["codes"], whole, atol=1e-6)
    # not what each half alone would give: the reduction is what makes them agree
    halves = torch.cat([sinkhorn_knopp(scores[:4], 0.05, 3), sinkhorn_knopp(scores[4:], 0.05, 3)])
    assert not torch.allclose(halves, whole, atol=1e-3)
    assert torch.allclose(got["center"], torch.cat(teacher).mean(dim=0), atol=1e-6)
