"""Precision and speed options: every method steps under bf16 autocast with its loss in float32; channels_last
changes layout, not results; compile_backbone compiles the online backbone once, in place; and a CLI run with
bf16-mixed and channels_last trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo
from contrastlab.modules import (
    BYOL,
    CACR,
    DCL,
    NCL,
    NNCLR,
    BarlowTwins,
    GSimCLR,
    MeanShifted,
    MoCoV2,
    MoCoV3,
    SimCLR,
    SimSiam,
    SupCon,
    VICReg,
    losses,
)
from tests.conftest import DIGITS_CONFIG, QUICK, in_process_store, store_client
from tests.learning import logged_finite, untrained_loss

INFO = DataInfo("tiny", "image", (1, 8, 8), 10, mean=(0.3,), std=(0.37,), views="contrastlab.augment.vision.ImageViews")
SMALL = dict(
    backbone="small_cnn",
    backbone_kwargs={"widths": (8, 16), "convs_per_stage": 1},
    data_info=INFO,
    augment=ImageViews(size=8, hflip_p=0.0),
)
HEAD = dict(proj_hidden_dim=16, proj_dim=8)
METHODS = {
    "simclr": lambda **kw: SimCLR(**HEAD, **SMALL, **kw),
    "supcon": lambda **kw: SupCon(**HEAD, **SMALL, **kw),
    "dclw": lambda **kw: DCL(sigma=0.5, **HEAD, **SMALL, **kw),
    "ncl": lambda **kw: NCL(**HEAD, **SMALL, **kw),
    "barlow_twins": lambda **kw: BarlowTwins(**HEAD, **SMALL, **kw),
    "vicreg": lambda **kw: VICReg(**HEAD, **SMALL, **kw),
    "mocov2": lambda **kw: MoCoV2(queue_size=16, **HEAD, **SMALL, **kw),
    "mocov3": lambda **kw: MoCoV3(pred_hidden_dim=16, **HEAD, **SMALL, **kw),
    "byol": lambda **kw: BYOL(pred_hidden_dim=16, **HEAD, **SMALL, **kw),
    "simsiam": lambda **kw: SimSiam(pred_hidden_dim=4, **HEAD, **SMALL, **kw),
    "nnclr": lambda **kw: NNCLR(queue_size=16, pred_hidden_dim=16, **HEAD, **SMALL, **kw),
    "msc": lambda **kw: MeanShifted(**SMALL, **kw),
    "cacr": lambda **kw: CACR(**HEAD, **SMALL, **kw),
    "gsimclr": lambda **kw: GSimCLR(num_clusters=2, **HEAD, **SMALL, **kw),
}


class Attached:
    training = True
    world_size = 1
    global_step = 0
    estimated_stepping_batches = 10

    def __init__(self, model):
        self.optimizers = [torch.optim.SGD(model.parameters(), lr=0.1)]


def one_step(model, monkeypatch, autocast: bool) -> torch.Tensor:
    trainer = Attached(model)
    monkeypatch.setattr(type(model), "trainer", property(lambda self: trainer))
    monkeypatch.setattr(type(model), "log", lambda self, *a, **k: None)
    torch.manual_seed(1)
    x = (torch.rand(16, 1, 8, 8) * 255).to(torch.uint8)
    batch = model.on_after_batch_transfer({"x": x, "y": torch.arange(16) % 4, "idx": torch.arange(16)}, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return model.training_step(batch, 0)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_steps_under_bf16_autocast_with_a_float32_loss(name, monkeypatch):
    torch.manual_seed(0)
    model = METHODS[name]()
    if name == "msc":
        model.center.copy_(nn.functional.normalize(torch.ones(model.feature_dim), dim=0))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    full = one_step(model, monkeypatch, autocast=False)
    model.load_state_dict(state)
    mixed = one_step(model, monkeypatch, autocast=True)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)
    mixed.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.backbone.parameters() if p.grad is not None)
    # bf16 convolutions and heads, float32 loss: close to the float32 step, not bf16's 1e-2 per cosine / T
    assert mixed.item() == pytest.approx(full.item(), rel=0.05, abs=0.05)


def test_losses_compute_similarities_in_float32_under_autocast():
    torch.manual_seed(0)
    z1, z2 = torch.randn(64, 32).bfloat16(), torch.randn(64, 32).bfloat16()
    exact = losses.nt_xent(z1.float(), z2.float(), 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = losses.nt_xent(z1, z2, 0.1)
        matmul_dtype = (z1.float() @ z2.float().T).dtype  # what autocast would have done to the similarity
    assert matmul_dtype == torch.bfloat16
    assert inside.dtype == torch.float32 and torch.equal(inside, exact)


def test_channels_last_changes_layout_not_features():
    torch.manual_seed(0)
    plain, fast = METHODS["simclr"](), METHODS["simclr"](channels_last=True)
    fast.load_state_dict(plain.state_dict())
    conv = fast.backbone.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 8, 8)
    plain.eval(), fast.eval()
    assert torch.allclose(plain.backbone(x), fast.backbone(x), atol=1e-5)


def test_compile_backbone_compiles_the_online_backbone_once_in_place():
    model = METHODS["byol"](compile_backbone=True)
    keys = set(model.state_dict())
    assert getattr(model.backbone, "_compiled_call_impl", None) is None  # not before the trainer sets up
    model.configure_model()
    compiled = model.backbone._compiled_call_impl
    assert compiled is not None and getattr(model.target_backbone, "_compiled_call_impl", None) is None
    model.configure_model()
    assert model.backbone._compiled_call_impl is compiled and set(model.state_dict()) == keys


def test_cli_fit_in_bf16_mixed_with_channels_last(tmp_path, cli_here):
    """In this process, its store named by absolute path (so it cannot log into another test's)."""
    args = ["-c", str(DIGITS_CONFIG), *QUICK, "--trainer.precision", "bf16-mixed", "--model.init_args.channels_last"]
    args += ["true", "--test_after_fit", "false", "--trainer.max_epochs", "1", "--tracking.log_checkpoints", "false"]
    args += in_process_store(tmp_path)
    code, err = cli_here("fit", *args, cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert run.info.status == "FINISHED" and run.data.params["trainer.precision"] == "bf16-mixed"
    assert logged_finite(run.data.metrics["train/loss_epoch"])
    # It trains in bf16: the epoch's mean loss is below the untrained model's loss on the same data, beyond one
    # batch's noise (measured 5.62 against 6.06, noise 0.047). kNN after one epoch is no bar (0.956 against 0.939).
    start, noise = untrained_loss(args)
    assert run.data.metrics["train/loss_epoch"] < start - 3 * noise, (
        run.data.metrics["train/loss_epoch"],
        start,
        noise,
    )
