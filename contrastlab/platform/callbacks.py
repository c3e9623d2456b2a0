"""Callbacks that tie a training to its MLflow run: config, checkpoints, system metrics."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from contrastlab import compat
from contrastlab.platform import checkpoints, tracking


def mlflow_logger(trainer: L.Trainer) -> MLFlowLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


class MLflowSaveConfig(SaveConfigCallback):
    """Logs the resolved config to the run: `config.yaml` as an artifact and every key as a param.

    Lightning's own SaveConfigCallback writes into `trainer.log_dir`, which a database or server store
    does not have; this writes to MLflow instead. A resumed run keeps the params it started with and
    adds the config of each resume as `resumes/<time>-config.yaml`.
    """

    def __init__(self, parser, config, **kwargs):
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = mlflow_logger(trainer)
        if logger is None or stage != "fit":
            return
        client, run_id = logger.experiment, logger.run_id
        text = self.parser.dump(self.config, skip_none=False)
        if getattr(logger, "resumed", False):
            client.log_text(run_id, text, f"resumes/{time.strftime('%Y%m%d-%H%M%S')}-config.yaml")
            return
        client.log_text(run_id, text, "config.yaml")
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in tracking.run_params(self.config.as_dict()).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=params[start : start + 100])


class RunCheckpoint(ModelCheckpoint):
    """`last.ckpt` and the best checkpoint by `monitor`, in the run's own folder, with the run id inside.

    `last.ckpt` is refreshed at every epoch's end and, within epochs, every `every_n_steps` optimiser
    steps and/or `every_minutes` minutes (0 turns either off), so a killed run loses little work.
    """

    CLOCK_CHECK_STEPS = 20

    def __init__(
        self,
        root: str,
        experiment: str,
        monitor: str,
        mode: str,
        method: str,
        every_n_steps: int = 0,
        every_minutes: float = 0.0,
    ):
        super().__init__(
            dirpath=None, filename="best-{epoch}-{step}", monitor=monitor, mode=mode, save_last=True, save_top_k=1
        )
        self.root, self.experiment, self.method = Path(root), experiment, method
        self.every_n_steps, self.every_seconds = every_n_steps, every_minutes * 60
        self.run_id: str | None = None
        self._last_save_time = time.monotonic()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.run_id is None:
            logger = mlflow_logger(trainer)
            # Only rank 0 talks to MLflow; the other ranks learn the run id from it.
            run_id = logger.run_id if trainer.is_global_zero and logger is not None else None
            self.run_id = trainer.strategy.broadcast(run_id)
            self.dirpath = str(checkpoints.run_dir(self.root, self.experiment, self.run_id or "no-run"))
        super().setup(trainer, pl_module, stage)

    def refresh_last(self, trainer: L.Trainer) -> None:
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_save_time = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # The epoch's last batch is saved by on_train_epoch_end, after its validation.
        if compat.is_last_batch(trainer) or self._should_skip_saving_checkpoint(trainer):
            return
        due = bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0
        # Rank 0's clock decides, so every rank saves together; a minutes-scale interval needs no
        # per-step collective, so the ranks only compare clocks every CLOCK_CHECK_STEPS steps.
        if self.every_seconds and (trainer.world_size == 1 or trainer.global_step % self.CLOCK_CHECK_STEPS == 0):
            late = time.monotonic() - self._last_save_time >= self.every_seconds
            due |= trainer.strategy.broadcast(late)
        if due:
            self.refresh_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning refreshes last.ckpt only when a top-k checkpoint is saved; a resume needs it every epoch.
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self.refresh_last(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint[checkpoints.META_KEY] = {
            "run_id": self.run_id,
            "method": self.method,
            "experiment": self.experiment,
            "slurm_job_id": checkpoints.slurm_job_id(),
        }


class SystemMetrics(L.Callback):
    """MLflow's system metrics (CPU, memory, disk, network; GPU with pynvml) sampled into the run on rank 0."""

    def __init__(self, interval: float, tracking_uri: str, resumed: bool):
        self.interval, self.tracking_uri, self.resumed = interval, tracking_uri, resumed
        self._monitor = None

    def on_fit_start(self, trainer, pl_module) -> None:
        logger = mlflow_logger(trainer)
        if not trainer.is_global_zero or logger is None or self.interval <= 0:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(
            logger.run_id,
            sampling_interval=self.interval,
            resume_logging=self.resumed,
            tracking_uri=self.tracking_uri,
        )
        self._monitor.start()

    def _stop(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def on_fit_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()


class EpochSummary(L.Callback):
    """One line per validation on rank 0 (`epoch 4 step 20 | train/loss 3.58 | val/knn_top1 0.912`), so
    a run without a progress bar still shows how it goes."""

    KEYS = ("train/loss_epoch", "val/knn_top1", "val/probe_acc", "val/auroc", "val/map", "val/effective_rank")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = [f"{k.replace('_epoch', '')} {float(metrics[k]):.4g}" for k in self.KEYS if k in metrics]
        print(f"epoch {trainer.current_epoch} step {trainer.global_step} | " + " | ".join(shown), flush=True)
