"""Every Lightning and Optuna internal contrastlab relies on, in one place.

Each is either a private attribute or an internal layout that the libraries may change in any release.
Callers go through these functions; tests/test_compat.py checks, against the installed versions, that
each still exists and means what we assume; pyproject.toml bounds both libraries below their next major.
"""

from __future__ import annotations

from typing import Any

# -- Lightning ----------------------------------------------------------------------------------------

# ModelCheckpoint's private methods that RunCheckpoint calls to refresh last.ckpt within an epoch.
MODEL_CHECKPOINT_PRIVATES = ("_save_last_checkpoint", "_monitor_candidates", "_should_skip_saving_checkpoint")
# Where a checkpoint keeps the training loop's progress through the current epoch.
CHECKPOINT_BATCH_PROGRESS = ("loops", "fit_loop", "epoch_loop.batch_progress", "current")


def _batch_progress(trainer):
    return trainer.fit_loop.epoch_loop.batch_progress


def batches_done(trainer) -> int:
    """Training batches of the current epoch processed so far (a checkpoint's position in the epoch)."""
    return _batch_progress(trainer).current.processed


def is_last_batch(trainer) -> bool:
    """Whether the batch being trained is its epoch's last."""
    return _batch_progress(trainer).is_last_batch


def log_step_metrics_now(trainer) -> None:
    """Send the running batch's step metrics to the loggers now, as Lightning does right after on_train_batch_end
    (a checkpoint saved in that hook would otherwise be ahead of the metrics its run holds)."""
    connector = trainer._logger_connector
    if trainer.fit_loop._should_accumulate() or not connector.should_update_logs:
        return
    connector.log_metrics(connector.metrics["log"])


def checkpoint_batch_progress(checkpoint: dict[str, Any]) -> dict[str, int]:
    """The saved epoch progress counters (ready, started, processed, completed) of a Lightning checkpoint."""
    node: Any = checkpoint
    for key in CHECKPOINT_BATCH_PROGRESS:
        node = node[key]
    return node


def epoch_mean_metrics(trainer) -> dict[str, Any]:
    """The training epoch's running means behind `self.log(..., on_epoch=True)`: {key: metric}, each with
    `value` (the sum of value x batch size) and `cumulated_batch_size` tensors."""
    results = trainer.fit_loop.epoch_loop._results
    return {
        key: metric
        for key, metric in results.items()
        if metric.is_tensor and metric.meta.on_epoch and metric.meta.is_mean_reduction
    }


def mlflow_logger_client(logger) -> Any:
    """An MLFlowLogger's client, which it makes in __init__, before (and without) creating a run."""
    return logger._mlflow_client


# LightningCLI's step that rebuilds the model from --ckpt_path's hyper-parameters; our CLI replaces it.
LIGHTNING_CLI_PRIVATES = ("_parse_ckpt_path",)


def attached_trainer(module) -> Any | None:
    """The module's trainer, or None when it has none (`module.trainer` raises then)."""
    return module._trainer


# -- Optuna -------------------------------------------------------------------------------------------


def study_storage(study):
    """The storage object behind a study (Optuna keeps it private)."""
    return study._storage


def trial_id(trial) -> int:
    """A trial's storage id (not its number): what storage calls and `optuna.trial.Trial(study, id)` take."""
    return trial._trial_id
