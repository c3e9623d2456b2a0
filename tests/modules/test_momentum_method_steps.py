"""One training step of each momentum/predictor/memory method, in Python: what trains, what follows, what is stored."""

from types import SimpleNamespace

import pytest
import torch

from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules import BYOL, NNCLR, MoCoV2, MoCoV3, SimSiam
from contrastlab.modules.core import heads
from contrastlab.modules.core.optim import OptimizerConfig

INFO = DataInfo("tiny", "image", (1, 8, 8), 10, mean=(0.3,), std=(0.37,))
SMALL = dict(backbone="small_cnn", data_info=INFO, augment=ImageViews(size=8, hflip_p=0.0), proj_hidden_dim=16)
BUILDERS = {
    "mocov2": lambda: MoCoV2(queue_size=16, proj_dim=8, shuffle_bn_splits=2, **SMALL),
    "mocov2_symmetric": lambda: MoCoV2(queue_size=16, proj_dim=8, symmetric=True, **SMALL),
    "mocov3": lambda: MoCoV3(proj_dim=8, pred_hidden_dim=16, **SMALL),
    "byol": lambda: BYOL(proj_dim=8, pred_hidden_dim=16, **SMALL),
    "simsiam": lambda: SimSiam(proj_dim=8, pred_hidden_dim=4, **SMALL),
    "simsiam_directpred": lambda: SimSiam(proj_dim=8, predictor="directpred", **SMALL),
    "nnclr": lambda: NNCLR(queue_size=16, proj_dim=8, pred_hidden_dim=16, **SMALL),
}
FROZEN = {"mocov2": ("key_backbone", "key_projector"), "mocov3": ("key_backbone", "key_projector")}
FROZEN |= {"mocov2_symmetric": FROZEN["mocov2"], "byol": ("target_backbone", "target_projector")}


class Attached:
    training = True
    world_size = 1
    global_step = 0
    estimated_stepping_batches = 10

    def __init__(self, model):
        self.optimizers = [torch.optim.SGD(model.parameters(), lr=0.1)]


def train_batch(model, n=6):
    x = (torch.rand(n, 1, 8, 8) * 255).to(torch.uint8)
    return model.on_after_batch_transfer({"x": x, "y": torch.arange(n) % 10, "idx": torch.arange(n)}, 0)


@pytest.mark.parametrize("name", BUILDERS)
def test_step_trains_the_online_network_only(name, monkeypatch):
    torch.manual_seed(0)
    model = BUILDERS[name]()
    trainer = Attached(model)
    monkeypatch.setattr(type(model), "trainer", property(lambda self: trainer))
    monkeypatch.setattr(type(model), "log", lambda self, *a, **k: None)
    if name.startswith("mocov2"):
        with torch.no_grad():  # the first step's queue is empty, so its loss is log(1) = 0: fill it first
            model.training_step(train_batch(model), 0)
    loss = model.training_step(train_batch(model), 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.features[0].weight.grad.abs().sum() > 0
    assert model.projector[0].weight.grad.abs().sum() > 0
    for target in FROZEN.get(name, ()):
        assert all(p.grad is None and not p.requires_grad for p in getattr(model, target).parameters()), target
    if isinstance(getattr(model, "predictor", None), torch.nn.Sequential):
        assert model.predictor[0].weight.grad.abs().sum() > 0
    if isinstance(getattr(model, "predictor", None), heads.DirectPredictor):
        assert int(model.predictor.updates) == 1 and not torch.equal(model.predictor.weight, torch.eye(8))


@pytest.mark.parametrize(
    "name, memory, per_step", [("mocov2", "queue", 6), ("mocov2_symmetric", "queue", 12), ("nnclr", "support", 6)]
)
def test_step_enqueues_the_batch_keys(name, memory, per_step, monkeypatch):
    model = BUILDERS[name]()
    trainer = Attached(model)
    monkeypatch.setattr(type(model), "trainer", property(lambda self: trainer))
    monkeypatch.setattr(type(model), "log", lambda self, *a, **k: None)
    for step in (1, 2):
        model.training_step(train_batch(model), 0).backward()
        queue = getattr(model, memory)
        assert int(queue.filled) == min(16, step * per_step)
        assert int(queue.pointer) == step * per_step % 16
        assert torch.allclose(queue.contents().norm(dim=1), torch.ones(int(queue.filled)))


class Fitting(Attached):
    accumulate_grad_batches = 1
    max_epochs = 2
    datamodule = None


def optimizer_of(model, monkeypatch):
    trainer = Fitting(model)
    monkeypatch.setattr(type(model), "trainer", property(lambda self: trainer))
    return model.configure_optimizers()["optimizer"]


@pytest.mark.parametrize("name", ["byol", "simsiam", "mocov3", "nnclr"])
def test_predictor_lr_ratio_scales_the_predictor_alone(name, monkeypatch):
    model = BUILDERS[name]()
    model.optimizer_config = OptimizerConfig(lr=0.01, predictor_lr_ratio=10.0)
    optimizer = optimizer_of(model, monkeypatch)
    initial_lr = {id(p): group["initial_lr"] for group in optimizer.param_groups for p in group["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(initial_lr) == sum(len(g["params"]) for g in optimizer.param_groups) == len(trainable)
    predictor = {id(p) for p in model.predictor.parameters()}
    for p in trainable:
        assert initial_lr[id(p)] == pytest.approx(0.1 if id(p) in predictor else 0.01)


@pytest.mark.parametrize("name", ["simsiam_directpred", "mocov2"])
def test_predictor_lr_ratio_without_a_trained_predictor_is_refused(name, monkeypatch):
    model = BUILDERS[name]()
    model.optimizer_config = OptimizerConfig(predictor_lr_ratio=10.0)
    with pytest.raises(ConfigError, match=r"model.optimizer.predictor_lr_ratio=10.0: .* has no trained predictor"):
        optimizer_of(model, monkeypatch)


class TenSamples:
    info = INFO

    def split(self, name):
        return range(10)


@pytest.mark.parametrize("name", ["mocov2", "nnclr"])
def test_setup_refuses_a_queue_larger_than_the_training_set(name, monkeypatch):
    model = BUILDERS[name]()  # a queue of 16
    trainer = SimpleNamespace(datamodule=TenSamples())
    monkeypatch.setattr(type(model), "trainer", property(lambda self: trainer))
    with pytest.raises(ConfigError, match="queue_size=16 is larger than the 10 training samples of tiny"):
        model.setup("fit")
