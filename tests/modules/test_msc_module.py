"""MeanShifted in Python: the center is the normal class's mean direction, fixed once, and AUROC is logged."""

import lightning as L
import pytest
import torch

from contrastlab.augment.vision import ImageViews
from contrastlab.datamodules.vision import Digits
from contrastlab.errors import ConfigError
from contrastlab.modules import MeanShifted


def trainer() -> L.Trainer:
    return L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )


def test_center_is_fixed_at_the_start_and_auroc_is_logged():
    L.seed_everything(0)
    data = Digits(batch_size=32, normal_class=1)
    model = MeanShifted(backbone="small_cnn", data_info=data.info, augment=ImageViews(size=8, hflip_p=0.0))
    assert model.probe is None and not model.center.any()
    fit = trainer()
    fit.fit(model, data)
    center = model.center.clone()
    assert center.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert {"val/auroc", "val/effective_rank"} <= set(fit.callback_metrics)
    assert "val/knn_top1" not in fit.callback_metrics  # one class in the bank: kNN top-1 would be meaningless
    assert torch.equal(model.state_dict()["center"], center)  # saved with checkpoints
    trainer().fit(model, data)  # a second fit (as a resume) keeps the center it was adapted with
    assert torch.equal(model.center, center)


def test_starting_weights_are_one_choice():
    with pytest.raises(ConfigError, match="init_from and pretrained"):
        MeanShifted(backbone="resnet18", pretrained=True, init_from="run.ckpt", data_info=Digits().info)
