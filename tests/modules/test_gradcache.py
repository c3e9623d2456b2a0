"""GradCache: the chunked step's gradients are the full batch's for every loss over in-batch negatives, random
state is replayed between the two passes, BatchNorm's running statistics are updated once, and a CLI run trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules import BYOL, DCL, NCL, SimCLR, SupCon
from contrastlab.modules.core import gradcache
from tests.conftest import DIGITS_CONFIG, QUICK, in_process_store, store_client
from tests.learning import untrained_loss

INFO = DataInfo("tiny", "image", (1, 8, 8), 10, mean=(0.3,), std=(0.37,), views="contrastlab.augment.vision.ImageViews")
COMMON = dict(
    backbone="small_cnn",
    backbone_kwargs={"widths": (6, 8), "convs_per_stage": 1},
    data_info=INFO,
    augment=ImageViews(size=8, hflip_p=0.0),
    proj_hidden_dim=16,
)
LOSSES = {
    "simclr": lambda **kw: SimCLR(proj_dim=8, **COMMON, **kw),
    "simclr_margin": lambda **kw: SimCLR(proj_dim=8, margin=0.2, **COMMON, **kw),
    "supcon": lambda **kw: SupCon(proj_dim=8, **COMMON, **kw),
    "dcl": lambda **kw: DCL(proj_dim=8, **COMMON, **kw),
    "dclw": lambda **kw: DCL(proj_dim=8, sigma=0.5, **COMMON, **kw),
    "ncl": lambda **kw: NCL(proj_dim=8, **COMMON, **kw),
}


class Attached:
    training = True
    optimizers = [torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)]


class NoBatchStats(nn.Module):
    """A backbone without batch statistics, so that chunked encoding equals the unchunked one exactly."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.Tanh(), nn.Dropout(dropout), nn.Conv2d(6, 8, 3, stride=2, padding=1)
        )
        self.num_features = 8

    def forward(self, x):
        return torch.tanh(self.net(x)).mean(dim=(2, 3))


def build(name, monkeypatch, dtype=torch.float32, backbone=None, **kw):
    torch.manual_seed(0)
    model = LOSSES[name](**kw)
    if backbone is not None:
        model.backbone = backbone
    model.to(dtype)
    trainer = Attached()
    monkeypatch.setattr(type(model), "trainer", property(lambda self: trainer))
    monkeypatch.setattr(type(model), "log", lambda self, *a, **k: None)
    return model


def batch_of(model, n=12, dtype=torch.float32, seed=1):
    torch.manual_seed(seed)
    x = (torch.rand(n, 1, 8, 8) * 255).to(torch.uint8)
    batch = model.on_after_batch_transfer({"x": x, "y": torch.arange(n) % 3, "idx": torch.arange(n)}, 0)
    batch["views"] = [v.to(dtype) for v in batch["views"]]
    return batch


def gradients(model, batch):
    for p in model.parameters():
        p.grad = None
    model.training_step(batch, 0).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def relative_error(ours: dict, reference: dict) -> float:
    assert ours.keys() == reference.keys()
    num = sum((ours[k] - reference[k]).pow(2).sum() for k in ours).sqrt()
    return float(num / sum(reference[k].pow(2).sum() for k in reference).sqrt())


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_equal_the_full_batch_in_float64(name, monkeypatch):
    model = build(name, monkeypatch, torch.float64, backbone=NoBatchStats())
    batch = batch_of(model, dtype=torch.float64)
    full = gradients(model, batch)
    model.hparams.grad_cache_chunk = 5  # 12 samples: chunks of 5, 5 and 2
    cached = gradients(model, batch)
    assert relative_error(cached, full) < 1e-10
    assert any(k.startswith("backbone.") for k in cached) and any(k.startswith("projector.") for k in cached)


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_equal_a_full_graph_step_over_the_same_chunks_with_batchnorm_and_dropout(name, monkeypatch):
    """With BatchNorm each chunk is normalised by its own statistics (as each device under DDP); with dropout the
    second pass must draw the first pass's masks. The reference keeps every chunk's graph, so it is exact."""
    model = build(name, monkeypatch)
    model.backbone.features.insert(3, nn.Dropout(0.3))
    batch = batch_of(model)
    chunk = 4
    model.hparams.grad_cache_chunk = chunk
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    cached = gradients(model, batch)

    model.load_state_dict(state)
    model.hparams.grad_cache_chunk = 0
    slices = gradcache.chunk_slices(batch["views"][0].shape[0], chunk)
    encode = model.backbone.forward
    chunked = lambda v: torch.cat([encode(v[s]) for s in slices])  # noqa: E731 - same RNG order as the first pass
    monkeypatch.setattr(model.backbone, "forward", chunked)
    torch.manual_seed(7)
    reference = gradients(model, batch)
    assert relative_error(cached, reference) < 1e-5


def test_without_the_replay_dropout_masks_differ_and_so_do_the_gradients(monkeypatch):
    model = build("simclr", monkeypatch, backbone=NoBatchStats(dropout=0.5))
    batch = batch_of(model)
    model.hparams.grad_cache_chunk = 4
    torch.manual_seed(3)
    replayed = gradients(model, batch)
    monkeypatch.setattr(gradcache, "_set_rng_state", lambda state, devices: None)
    torch.manual_seed(3)
    not_replayed = gradients(model, batch)
    assert relative_error(not_replayed, replayed) > 1e-3


def test_batchnorm_running_statistics_are_updated_once_per_step(monkeypatch):
    import copy

    model = build("simclr", monkeypatch)
    batch = batch_of(model, n=12)
    expected = copy.deepcopy(model.backbone)  # what the first pass alone does: 3 chunks x 2 views, lowered momentum
    for m in expected.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1 - 0.9 ** (1 / 3)
    with torch.no_grad():
        for view in batch["views"]:
            for part in gradcache.chunk_slices(12, 4):
                expected(view[part])
    model.hparams.grad_cache_chunk = 4
    gradients(model, batch)
    bn, bn_expected = model.backbone.features[1], expected.features[1]
    assert int(bn.num_batches_tracked) == 6 and bn.momentum == 0.1  # not 12: the second pass restored them
    assert torch.allclose(bn.running_mean, bn_expected.running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, bn_expected.running_var, atol=1e-6)


def test_loss_value_and_probe_are_unchanged(monkeypatch):
    """GradCache changes how the gradients are computed, not what a step logs or what the online probe learns: the
    same method loss and probe loss, and the same probe gradient (from the first view's detached features)."""
    model = build("simclr", monkeypatch, torch.float64, backbone=NoBatchStats())
    model.probe = nn.Linear(8, 10).double()
    logged = {}
    monkeypatch.setattr(type(model), "log", lambda self, name, value, **kw: logged.__setitem__(name, value))
    batch = batch_of(model, dtype=torch.float64)
    plain_grads, plain = gradients(model, batch), dict(logged)
    model.hparams.grad_cache_chunk = 3
    cached_grads, cached = gradients(model, batch), dict(logged)
    for key in ("train/loss", "train/probe_loss"):
        assert torch.allclose(cached[key], plain[key], rtol=1e-12), key
    probe = {k: g for k, g in plain_grads.items() if k.startswith("probe.")}
    assert probe.keys() == {"probe.weight", "probe.bias"} and all(g.abs().sum() > 0 for g in probe.values())
    assert relative_error({k: cached_grads[k] for k in probe}, probe) < 1e-10


def test_methods_without_in_batch_negatives_and_bad_chunks_are_refused():
    with pytest.raises(ConfigError, match="grad_cache_chunk: BYOL does not support GradCache"):
        BYOL(grad_cache_chunk=32, **COMMON)
    with pytest.raises(ConfigError, match="grad_cache_chunk must be >= 0"):
        SimCLR(grad_cache_chunk=-1, **COMMON)


def test_cli_fit_with_grad_cache_trains_and_tracks(tmp_path, cli_here):
    """`contrastlab fit ... --model.init_args.grad_cache_chunk 32`: batch 128 in chunks of 32, in this process (its
    store named by absolute path, so it cannot log into another test's)."""
    args = ["-c", str(DIGITS_CONFIG), *QUICK, "--model.init_args.grad_cache_chunk", "32"]
    args += ["--data.init_args.batch_size", "128", "--test_after_fit", "false", "--tracking.log_checkpoints", "false"]
    args += in_process_store(tmp_path)
    code, err = cli_here("fit", *args, cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert run.info.status == "FINISHED"
    chunk_params = {k: v for k, v in run.data.params.items() if k.endswith("grad_cache_chunk")}
    assert chunk_params == {"model.grad_cache_chunk": "32"}
    # It trains: the last epoch's mean loss is far below the untrained model's loss on the same data (measured 3.73
    # against 5.40, one batch's noise 0.055). kNN after 2 epochs is no bar: 0.928 against 0.939 untrained.
    last = max(client.get_metric_history(run.info.run_id, "train/loss_epoch"), key=lambda m: m.step).value
    start, noise = untrained_loss(args)
    assert last < start - 5 * noise, (last, start, noise)


class StepAsForward(nn.Module):
    """DDP wraps what it runs: here, as under Lightning, the module's training step."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.training_step(batch, 0)


def ddp_problem():
    torch.manual_seed(0)
    model = SimCLR(proj_dim=8, **{**COMMON, "backbone_kwargs": {"widths": (8,), "convs_per_stage": 1}})
    model.backbone = NoBatchStats()
    model.double()
    views = [torch.randn(16, 1, 8, 8, dtype=torch.float64) for _ in range(2)]
    return model, {"views": views, "y": torch.arange(16) % 10, "idx": torch.arange(16)}


def ddp_worker(rank: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model, batch = ddp_problem()
        trainer = Attached()
        type(model).trainer = property(lambda self: trainer)
        type(model).log = lambda self, *a, **k: None
        part = slice(rank * 8, rank * 8 + 8)
        mine = {"views": [v[part] for v in batch["views"]], "y": batch["y"][part], "idx": batch["idx"][part]}
        ddp = nn.parallel.DistributedDataParallel(StepAsForward(model))
        grads = {}
        for chunk in (0, 3):  # 8 samples per rank: chunks of 3, 3 and 2
            model.hparams.grad_cache_chunk = chunk
            model.zero_grad(set_to_none=True)
            ddp(mine).backward()  # one all-reduce per parameter, in this backward
            grads[chunk] = {n: p.grad.clone() for n, p in model.named_parameters()}
        if rank == 0:
            torch.save(grads, out)
    finally:
        dist.destroy_process_group()


def test_under_ddp_gradients_equal_those_without_grad_cache(tmp_path):
    import torch.multiprocessing as mp

    from tests.conftest import free_port

    out = str(tmp_path / "grads.pt")
    mp.spawn(ddp_worker, args=(free_port(), out), nprocs=2, join=True)
    got = torch.load(out)
    # the projector's BatchNorm sees each rank's 8 samples, so the reference is DDP without GradCache
    assert relative_error(got[3], got[0]) < 1e-10
    assert got[0]["backbone.net.0.weight"].abs().sum() > 0


def test_under_bf16_autocast_gradients_stay_close_to_the_full_batch(monkeypatch):
    model = build("simclr", monkeypatch, backbone=NoBatchStats())
    batch = batch_of(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = gradients(model, batch)
        model.hparams.grad_cache_chunk = 4
        cached = gradients(model, batch)
    assert all(g.dtype == torch.float32 for g in cached.values())
    assert relative_error(cached, full) < 2e-2  # bf16 convolutions, chunked or not
