"""The Lightning and Optuna internals contrastlab relies on (contrastlab/compat.py) exist and mean what we assume."""

import lightning as L
import optuna
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from torch import nn

from contrastlab import compat


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.seen: list[tuple[int, bool]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((compat.batches_done(self.trainer), compat.is_last_batch(self.trainer)))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_internals(tmp_path):
    model = Tiny()
    assert compat.attached_trainer(model) is None
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(6, 2)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, data)
    assert compat.attached_trainer(model) is trainer
    # while a batch trains, the batches before it are done, and the third is the epoch's last
    assert model.seen == [(0, False), (1, False), (2, True)]
    assert compat.batches_done(trainer) == 3
    checkpoint = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=True)
    assert compat.checkpoint_batch_progress(checkpoint)["processed"] == 3
    for name in compat.MODEL_CHECKPOINT_PRIVATES:
        assert callable(getattr(ModelCheckpoint, name)), name
    for name in compat.LIGHTNING_CLI_PRIVATES:
        assert callable(getattr(LightningCLI, name)), name


class Logs(Tiny):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("loss", loss, on_step=True, on_epoch=True, batch_size=2)
        self.log("peak", loss, on_epoch=True, reduce_fx="max", batch_size=2)
        if batch_idx == 1:  # after two batches of two samples
            (metric,) = compat.epoch_mean_metrics(self.trainer).values()
            assert int(metric.cumulated_batch_size) == 4 and metric.meta.name == "loss"
        return loss


def test_epoch_means_and_the_mlflow_logger_client(tmp_path):
    from lightning.pytorch.loggers import MLFlowLogger

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(6, 2)), batch_size=2)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(Logs(), data)
    logger = MLFlowLogger(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert compat.mlflow_logger_client(logger).tracking_uri.endswith("mlflow.db") and not logger._initialized


def test_optuna_internals():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    storage = compat.study_storage(study)
    assert storage.get_trial(compat.trial_id(trial)).number == trial.number
    same = optuna.trial.Trial(study, compat.trial_id(trial))  # how a sweep trial reopens itself
    same.set_user_attr("k", 1)
    assert storage.get_trial(compat.trial_id(trial)).user_attrs == {"k": 1}
