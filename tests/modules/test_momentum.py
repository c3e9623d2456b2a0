"""Momentum targets: the EMA update and its cosine schedule against their formulas, and their state in checkpoints."""

import copy
import math

import lightning as L
import pytest
import torch
from torch import nn

from contrastlab.augment.vision import ImageViews
from contrastlab.datamodules.vision import Digits
from contrastlab.errors import ConfigError
from contrastlab.modules import BYOL, MoCoV2
from contrastlab.modules.core.momentum import cosine_momentum, ema_update_


@pytest.mark.parametrize("base, final", [(0.996, 1.0), (0.99, 1.0), (0.9, 0.95), (0.999, 0.999)])
def test_cosine_momentum_is_byols_schedule(base, final):
    total = 37
    for k in range(total + 1):
        expected = final - (final - base) * (math.cos(math.pi * k / total) + 1) / 2
        assert cosine_momentum(base, final, k, total) == pytest.approx(expected, abs=1e-15)
    assert cosine_momentum(base, final, 0, total) == pytest.approx(base)
    assert cosine_momentum(base, final, total, total) == pytest.approx(final)
    assert cosine_momentum(base, final, total + 5, total) == pytest.approx(final)  # past the end: stays


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.99, 1.0])
def test_ema_update_follows_its_formula_and_leaves_buffers(momentum):
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    target = copy.deepcopy(online)
    for p in online.parameters():
        p.data.add_(torch.randn_like(p))
    online[1].running_mean.fill_(5.0)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update_(target, online, momentum)
    for old, new, o in zip(before, target.parameters(), online.parameters(), strict=True):
        assert torch.allclose(new, momentum * old + (1 - momentum) * o, atol=1e-7)
    assert torch.equal(target[1].running_mean, torch.zeros(3))


class FakeTrainer:
    def __init__(self, global_step: int, total: int):
        self.global_step, self.estimated_stepping_batches = global_step, total


class StepAddsOne:
    """An optimiser whose step moves every online parameter by +1, so the EMA's input is known."""

    def __init__(self, params):
        self.params = list(params)

    def step(self, closure=None):
        with torch.no_grad():
            for p in self.params:
                p.add_(1.0)


def tiny_byol(**kwargs) -> BYOL:
    info = Digits().info
    return BYOL(backbone="small_cnn", data_info=info, proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16, **kwargs)


@pytest.mark.parametrize("step", [0, 3, 10])
def test_optimizer_step_updates_targets_with_the_scheduled_momentum(step, monkeypatch):
    model = tiny_byol(momentum=0.9, final_momentum=1.0)
    monkeypatch.setattr(BYOL, "trainer", property(lambda self: FakeTrainer(step, 10)))
    logged = {}
    monkeypatch.setattr(BYOL, "log", lambda self, key, value, **kw: logged.update({key: value}))
    target_before = [p.detach().clone() for p in model.target_projector.parameters()]
    online = [p for p in model.parameters() if p.requires_grad]
    model.optimizer_step(0, 0, StepAddsOne(online), None)
    m = cosine_momentum(0.9, 1.0, step, 10)  # the step being taken, counted before the optimiser runs
    assert logged["train/momentum"] == pytest.approx(m)
    for old, new, o in zip(
        target_before, model.target_projector.parameters(), model.projector.parameters(), strict=True
    ):
        assert torch.allclose(new, m * old + (1 - m) * o, atol=1e-6)
    assert not any(p.requires_grad for p in model.target_backbone.parameters())


def test_constant_momentum_ignores_the_step(monkeypatch):
    model = tiny_byol(momentum=0.95, final_momentum=None)
    monkeypatch.setattr(BYOL, "trainer", property(lambda self: FakeTrainer(7, 10)))
    assert model.current_momentum() == 0.95


@pytest.mark.parametrize("key, kwargs", [("momentum", {"momentum": 1.5}), ("final_momentum", {"final_momentum": -0.1})])
def test_momentum_outside_0_1_is_a_config_error(key, kwargs):
    with pytest.raises(ConfigError, match=rf"model\.init_args\.{key} must be in \[0, 1\]"):
        tiny_byol(**kwargs)


def test_targets_are_in_the_state_dict_and_not_optimised():
    model = tiny_byol()
    keys = model.state_dict().keys()
    assert any(k.startswith("target_backbone.") for k in keys) and any(k.startswith("target_projector.") for k in keys)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in trainable for p in model.target_backbone.parameters())


def short_fit(model, tmp_path, steps: int = 3) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
    )
    trainer.fit(model, Digits(batch_size=32, max_train_samples=128))
    return trainer


def test_momentum_targets_and_queue_survive_a_checkpoint(tmp_path):
    L.seed_everything(0)
    info = Digits().info
    model = MoCoV2(
        backbone="small_cnn",
        data_info=info,
        augment=ImageViews(size=8, hflip_p=0.0),
        queue_size=80,  # 3 steps x 32 keys: the pointer has wrapped around
        proj_hidden_dim=16,
        proj_dim=8,
        momentum=0.5,
        shuffle_bn_splits=2,
    )
    initial = copy.deepcopy(model.key_backbone.state_dict())
    trainer = short_fit(model, tmp_path)
    assert int(model.queue.pointer) == (3 * 32) % 80 and int(model.queue.filled) == 80
    first_conv = "features.0.weight"
    assert not torch.equal(initial[first_conv], model.key_backbone.state_dict()[first_conv])  # it followed
    path = tmp_path / "moco.ckpt"
    trainer.save_checkpoint(path)

    restored = MoCoV2.load_from_checkpoint(path, map_location="cpu")
    for name in ("key_backbone", "key_projector", "queue"):
        ours, theirs = getattr(model, name).state_dict(), getattr(restored, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert int(restored.queue.pointer) == 16
    # The schedule reads the resumed trainer's step, so a restored run continues where it stopped.
    assert torch.load(path, weights_only=False)["global_step"] == 3
