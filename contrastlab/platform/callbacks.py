"""Callbacks that tie a training to its MLflow run: config, checkpoints, system metrics, divergence,
predicted embeddings.

A new run is created in the store at the first training step (`on_train_start`), not before: a mistake
that the data or the method finds while setting up ends the command without leaving an empty FAILED run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from contrastlab import compat
from contrastlab.errors import TrainingDiverged
from contrastlab.platform import checkpoints, stores, tracking
from contrastlab.platform.terminal import say

# Under DDP, or on an accelerator, a decision that needs every rank or a value read back from the device
# is taken every this many steps, not every step: each one stalls the pipeline.
SYNC_EVERY_N_STEPS = 20


def sync_due(trainer: L.Trainer) -> bool:
    """Whether this step is one where ranks may compare notes (every step on one CPU process)."""
    if trainer.world_size == 1 and trainer.strategy.root_device.type == "cpu":
        return True
    return trainer.global_step % SYNC_EVERY_N_STEPS == 0 or compat.is_last_batch(trainer)


def mlflow_logger(trainer: L.Trainer) -> MLFlowLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


class MLflowSaveConfig(SaveConfigCallback):
    """Logs the resolved config to the run: `config.yaml` as an artifact and every key as a param.

    Lightning's own SaveConfigCallback writes into `trainer.log_dir`, which a database or server store
    does not have; this writes to MLflow instead, at the first training step (so that a run exists only
    once everything is set up). A resumed run is marked RUNNING again, keeps the params it started with
    and adds the config of each resume as `resumes/<time>-config.yaml`. URIs are logged without secrets.
    """

    def __init__(self, parser, config, **kwargs):
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pass  # see on_train_start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not self.already_saved:
            self.save_config(trainer, pl_module, "fit")
        self.already_saved = True

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = mlflow_logger(trainer)
        if logger is None or stage != "fit":
            return
        client, run_id = logger.experiment, logger.run_id
        text = stores.redact_text(self.parser.dump(self.config, skip_none=False))
        if getattr(logger, "resumed", False):
            client.update_run(run_id, status="RUNNING")
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
    A resumed run's folder is known from the start (`run_id`); a new run's once it exists, at the first step.
    """

    def __init__(
        self,
        root: str,
        experiment: str,
        monitor: str,
        mode: str,
        method: str,
        every_n_steps: int = 0,
        every_minutes: float = 0.0,
        run_id: str | None = None,
    ):
        super().__init__(
            dirpath=None, filename="best-{epoch}-{step}", monitor=monitor, mode=mode, save_last=True, save_top_k=1
        )
        self.root, self.experiment, self.method = Path(root), experiment, method
        self.every_n_steps, self.every_seconds = every_n_steps, every_minutes * 60
        self.run_id = run_id
        self._last_save_time = time.monotonic()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # A resumed run's folder must be known before Lightning restores this callback's state (best path).
        self.dirpath = str(checkpoints.run_dir(self.root, self.experiment, self.run_id or "new-run"))
        super().setup(trainer, pl_module, stage)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._open_run(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._open_run(trainer)  # validate, test and predict have no training start

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._open_run(trainer)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._open_run(trainer)

    def _open_run(self, trainer: L.Trainer) -> None:
        if self.run_id is not None:
            return
        logger = mlflow_logger(trainer)
        # Only rank 0 talks to MLflow (this creates the run); the other ranks learn the run id from it.
        run_id = logger.run_id if trainer.is_global_zero and logger is not None else None
        self.run_id = trainer.strategy.broadcast(run_id)
        self.dirpath = str(checkpoints.run_dir(self.root, self.experiment, self.run_id or "no-run"))

    def refresh_last(self, trainer: L.Trainer) -> None:
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_save_time = time.monotonic()

    def refresh_last_at_batch_end(self, trainer: L.Trainer) -> None:
        """last.ckpt in on_train_batch_end: the batch's step metrics go to the run first (Lightning logs them only
        after this hook; the logger drops its second copy), so that a kill right after the save loses none."""
        compat.log_step_metrics_now(trainer)
        self.refresh_last(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # The epoch's last batch is saved by on_train_epoch_end, after its validation.
        if compat.is_last_batch(trainer) or self._should_skip_saving_checkpoint(trainer):
            return
        due = bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0
        # Rank 0's clock decides, so every rank saves together; a minutes-scale interval needs no
        # per-step collective, so the ranks only compare clocks every SYNC_EVERY_N_STEPS steps.
        if self.every_seconds and (trainer.world_size == 1 or trainer.global_step % SYNC_EVERY_N_STEPS == 0):
            late = time.monotonic() - self._last_save_time >= self.every_seconds
            due |= trainer.strategy.broadcast(late)
        if due:
            self.refresh_last_at_batch_end(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning refreshes last.ckpt only when a top-k checkpoint is saved; a resume needs it every epoch.
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self.refresh_last(trainer)

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        # A tie goes to the later checkpoint, which has trained longer. Lightning keeps the earlier one, and a
        # small validation split ties often: 6 ArrowHead series give a kNN top-1 of 0.5 or 0.67 at every check.
        if current is not None and self.best_k_models and len(self.best_k_models) >= self.save_top_k > 0:
            tied = bool(torch.eq(current, self.best_k_models[self.kth_best_model_path]))
            if trainer.strategy.reduce_boolean_decision(tied):
                return True
        return super().check_monitor_top_k(trainer, current)

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

    def on_train_start(self, trainer, pl_module) -> None:
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
    """One line per validation on rank 0 (`epoch 4 step 20 | train/loss 3.58 | val/knn_top1 0.912`): what a log
    keeps of a run, and on a terminal the history above the progress bar."""

    KEYS = ("train/loss_epoch", "val/knn_top1", "val/probe_acc", "val/auroc", "val/map", "val/effective_rank")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        keys = list(self.KEYS)
        monitor = getattr(trainer.checkpoint_callback, "monitor", None)  # what the method's evaluators() watch
        if monitor and monitor not in keys:
            keys.insert(1, monitor)
        shown = [f"{k.replace('_epoch', '')} {float(metrics[k]):.4g}" for k in keys if k in metrics]
        say(f"epoch {trainer.current_epoch} step {trainer.global_step} | " + " | ".join(shown))


class DivergenceGuard(L.Callback):
    """Ends a fit at its first non-finite training loss, before any checkpoint of NaN weights is written.

    The run is marked FAILED with the step and the value (`contrastlab.fail_reason`), the checkpoints
    written before it are kept (`last.ckpt` the newest finite one), and the command ends with one line.
    On one CPU process every step's loss is looked at. Elsewhere reading it back would stall the device
    (and, under DDP, need a collective) every step, so each step only folds the loss into a flag on the
    device, which is read every SYNC_EVERY_N_STEPS steps. Before every checkpoint the flag is read and the
    weights themselves are checked (a step can turn them to NaN while its own loss was finite), and the
    checkpoint is refused if either is not finite.
    """

    NONE = torch.iinfo(torch.int64).max

    def __init__(self) -> None:
        self._first_bad_step: torch.Tensor | None = None  # on the loss's device; NONE while all is finite
        self._first_bad_value: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float().mean()
        if self._first_bad_step is None:
            self._first_bad_step = torch.tensor(self.NONE, device=loss.device)
            self._first_bad_value = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self._first_bad_step == self.NONE)
        self._first_bad_step = torch.where(first, trainer.global_step, self._first_bad_step)
        self._first_bad_value = torch.where(first, loss, self._first_bad_value)
        if sync_due(trainer):
            self.raise_if_diverged(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not trainer.training:
            return
        self.raise_if_diverged(trainer)
        # parameters and buffers (BatchNorm's running statistics turn to NaN first)
        state = [t for t in pl_module.state_dict().values() if t.is_floating_point()]
        finite = torch.stack([torch.isfinite(t).all() for t in state]).all().float()
        if trainer.world_size > 1:  # buffers may differ between ranks: every rank must reach the same decision
            finite = trainer.strategy.reduce(finite, reduce_op="min")
        if not bool(finite):
            self._stop(trainer, f"non-finite weights at epoch {trainer.current_epoch}, step {trainer.global_step}")

    def raise_if_diverged(self, trainer: L.Trainer) -> None:
        if self._first_bad_step is None:
            return
        step = self._first_bad_step
        if trainer.world_size > 1:
            step = trainer.strategy.reduce(step.clone(), reduce_op="min")
        step = int(step)
        if step != self.NONE:
            value = float(self._first_bad_value) if int(self._first_bad_step) == step else float("nan")
            self._stop(trainer, f"non-finite training loss ({value}) at epoch {trainer.current_epoch}, step {step}")

    def _stop(self, trainer: L.Trainer, reason: str) -> None:
        logger = mlflow_logger(trainer)
        if trainer.is_global_zero and logger is not None:
            logger.experiment.set_tag(logger.run_id, "contrastlab.fail_reason", reason)
        ckpt = trainer.checkpoint_callback
        kept = getattr(ckpt, "last_model_path", "") or "none was written yet"
        raise TrainingDiverged(
            reason,
            f"the run is marked FAILED and its last finite checkpoint is kept ({kept}): "
            "lower model.optimizer.lr or lengthen its warmup_epochs, then start a new run",
        )


class EmbeddingsWriter(BasePredictionWriter):
    """After `contrastlab predict`: the predicted embeddings (`features`, `y`, `idx` of each sample) in
    `embeddings.pt` in the run's checkpoint folder, also logged to the run as `predict/embeddings.pt`.

    Read it back with `torch.load(path, weights_only=True)`: a dict of tensors in sample order.
    """

    FILENAME = "embeddings.pt"

    def __init__(self):
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if predictions and isinstance(predictions[0], list):  # several predict loaders: one list each
            predictions = [out for loader in predictions for out in loader]
        if not predictions:
            return
        keys = [k for k in ("features", "y", "idx") if k in predictions[0]]
        embeddings = {k: torch.cat([out[k].detach() for out in predictions]) for k in keys}
        if trainer.world_size > 1:
            # Each rank predicted its shard; DistributedSampler pads the shards with repeated samples.
            embeddings = {k: pl_module.all_gather(v).flatten(0, 1) for k, v in embeddings.items()}
            order = _first_of_each(embeddings["idx"])
            embeddings = {k: v[order] for k, v in embeddings.items()}
        if not trainer.is_global_zero:
            return
        embeddings = {k: v.cpu() for k, v in embeddings.items()}
        ckpt = trainer.checkpoint_callback
        folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.FILENAME
        torch.save(embeddings, path)
        logger = mlflow_logger(trainer)
        where = ""
        if logger is not None:
            logger.experiment.log_artifact(logger.run_id, str(path), "predict")
            where = f" and logged to run {logger.run_id} as predict/{self.FILENAME}"
        shape = "x".join(str(s) for s in embeddings["features"].shape)
        print(f"embeddings ({shape}) written to {path}{where}", flush=True)


def _first_of_each(idx: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each sample index, ordered by sample index."""
    order = torch.argsort(idx, stable=True)
    sorted_idx = idx[order]
    first = torch.ones_like(sorted_idx, dtype=torch.bool)
    first[1:] = sorted_idx[1:] != sorted_idx[:-1]
    return order[first]
