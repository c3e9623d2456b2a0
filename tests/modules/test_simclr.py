"""SimCLR as a LightningModule: one training step in Python, with and without labels."""

import lightning as L
import pytest
import torch

from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules import SimCLR


def make(num_classes: int = 10) -> SimCLR:
    info = DataInfo("tiny", "image", (1, 8, 8), num_classes, mean=(0.3,), std=(0.37,))
    return SimCLR(backbone="small_cnn", augment=ImageViews(size=8, hflip_p=0.0), data_info=info, proj_hidden_dim=32)


def batch(labels):
    torch.manual_seed(0)
    x = (torch.rand(len(labels), 1, 8, 8) * 255).to(torch.uint8)
    return {"x": x, "y": torch.tensor(labels), "idx": torch.arange(len(labels))}


class Attached:
    """What the steps read from a trainer, without running one."""

    training = True
    world_size = 1

    def __init__(self, model):
        self.optimizers = [torch.optim.SGD(model.parameters(), lr=0.1)]


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [-1, -1, -1, -1], [0, -1, 2, -1]])
def test_training_step_trains_encoder_and_probe_only_from_labels(labels, monkeypatch):
    model = make()
    trainer = Attached(model)
    monkeypatch.setattr(SimCLR, "trainer", property(lambda self: trainer))
    monkeypatch.setattr(SimCLR, "log", lambda self, *a, **k: None)
    b = model.on_after_batch_transfer(batch(labels), 0)
    assert len(b["views"]) == 2 and b["views"][0].shape == (4, 1, 8, 8)
    loss = model.training_step(b, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.features[0].weight.grad.abs().sum() > 0
    probe_grad = model.probe.weight.grad.abs().sum()
    assert (probe_grad > 0) == any(y >= 0 for y in labels)


def test_probe_does_not_change_the_encoder(monkeypatch):
    model = make()
    trainer = Attached(model)
    monkeypatch.setattr(SimCLR, "trainer", property(lambda self: trainer))
    monkeypatch.setattr(SimCLR, "log", lambda self, *a, **k: None)
    model.contrastive_loss = lambda feats, batch: feats[0].sum() * 0  # only the probe's loss remains
    b = model.on_after_batch_transfer(batch([0, 1, 2, 3]), 0)
    model.training_step(b, 0).backward()
    assert model.backbone.features[0].weight.grad.abs().sum() == 0
    assert model.probe.weight.grad.abs().sum() > 0


def test_fits_without_the_cli():
    from contrastlab.datamodules.vision import Digits

    L.seed_everything(0)
    data = Digits(batch_size=128, max_train_samples=256)
    model = SimCLR(
        backbone="small_cnn", data_info=data.info, augment=ImageViews(size=8, hflip_p=0.0), proj_hidden_dim=64
    )
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, data)
    assert {"val/knn_top1", "val/probe_acc", "val/alignment", "val/uniformity", "val/effective_rank"} <= set(
        trainer.callback_metrics
    )


def test_bad_temperature_and_missing_data_info():
    with pytest.raises(ConfigError, match="model.temperature"):
        SimCLR(temperature=0.0, data_info=make().data_info)
    with pytest.raises(ConfigError, match="model.data_info"):
        SimCLR(backbone="small_cnn")
