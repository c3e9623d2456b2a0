"""Inside a trial's `fit`: report the objective to the study each validation, prune, fail on a NaN loss.

A NaN or infinite loss ends any fit (the platform's DivergenceGuard); here its reason goes to the study.

`contrastlab sweep` adds `--trainer.callbacks+=contrastlab.sweeps.pruning.TrialReporter` to each trial's
command line and names the trial in the environment (CONTRASTLAB_SWEEP_TRIAL, JSON: storage, study, trial id,
metric, pruner, and which of the trial's seeds this fit is), so the storage's password never lands in a logged
config. Rank 0 talks to the study and decides; the decision is broadcast so every DDP rank stops at the same epoch.
With seeds, only the first seed's curve is reported to the pruner: the others record their objective.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import lightning as L

from contrastlab.errors import ConfigError, TrainingDiverged
from contrastlab.platform.callbacks import mlflow_logger
from contrastlab.sweeps.config import make_pruner
from contrastlab.sweeps.storage import (
    OBJECTIVE_ATTR,
    OUTCOME_ATTR,
    REASON_ATTR,
    RUN_ATTR,
    SEED_INDEX_KEY,
    STEP_ATTR,
    TRAIN_SECONDS_ATTR,
    TRIAL_ENV,
    open_storage,
)

DEVICES_TAG = "sweep.devices"


class TrialFailed(RuntimeError):
    """The trial cannot give a meaningful objective (NaN/inf loss or metric); its reason is in the study."""


class TrialReporter(L.Callback):
    def __init__(self) -> None:
        raw = os.environ.get(TRIAL_ENV)
        if not raw:
            raise ConfigError(
                f"trainer.callbacks: TrialReporter runs only in trials that `contrastlab sweep` starts "
                f"({TRIAL_ENV} is not set): remove it from the config"
            )
        self.spec: dict[str, Any] = json.loads(raw)
        self.metric: str = self.spec["metric"]
        self._trial = None
        self._train_started = 0.0

    @property
    def trial(self):
        """The Optuna trial, opened on first use, on rank 0 only."""
        if self._trial is None:
            import optuna

            storage = open_storage(self.spec["storage"])
            study = optuna.load_study(
                study_name=self.spec["study"], storage=storage, pruner=make_pruner(self.spec["pruner"])
            )
            self._trial = optuna.trial.Trial(study, self.spec["trial_id"])
        return self._trial

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_started = time.perf_counter()
        logger = mlflow_logger(trainer)
        if trainer.is_global_zero and logger is not None:
            self.trial.set_user_attr(RUN_ATTR, logger.run_id)
            devices = os.environ.get("CUDA_VISIBLE_DEVICES")
            if devices is not None:  # as this process sees it: its worker's slice
                logger.experiment.set_tag(logger.run_id, DEVICES_TAG, devices)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # what the trial's process spent on its own work; the rest of its time is the cost of starting it
        if trainer.is_global_zero:
            self.trial.set_user_attr(TRAIN_SECONDS_ATTR, time.perf_counter() - self._train_started)

    def _record_failure(self, trainer: L.Trainer, reason: str) -> None:
        if trainer.is_global_zero:
            self.trial.set_user_attr(REASON_ATTR, reason)
            self.trial.set_user_attr(OUTCOME_ATTR, "failed")
            logger = mlflow_logger(trainer)
            if logger is not None:
                logger.experiment.set_tag(logger.run_id, "sweep.fail_reason", reason)

    def _fail(self, trainer: L.Trainer, reason: str) -> None:
        self._record_failure(trainer, reason)
        raise TrialFailed(reason)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, TrainingDiverged):
            self._record_failure(trainer, exception.reason)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        decision = self._report(trainer) if trainer.is_global_zero else None
        kind, message = trainer.strategy.broadcast(decision, src=0) or (None, "")
        if kind == "prune":
            trainer.should_stop = True
        elif kind == "fail":
            self._fail(trainer, message)
        elif kind == "config":
            raise ConfigError(message)

    def _report(self, trainer: L.Trainer) -> tuple[str, str] | None:
        """Report the objective on rank 0: None to go on, ("prune", ""), or ("fail"|"config", reason)."""
        metrics = trainer.callback_metrics
        if self.metric not in metrics:
            logged = ", ".join(sorted(k for k in metrics if k.startswith(("val/", "train/"))))
            return "config", (
                f"objective.metric={self.metric!r} is not logged by this run (it logs {logged}): "
                "set objective.metric in the sweep config to one of them"
            )
        value = float(metrics[self.metric])
        step = trainer.current_epoch + 1  # epochs trained: the resource Hyperband allocates
        if not math.isfinite(value):
            return "fail", f"objective {self.metric} is {value} at epoch {trainer.current_epoch}"
        trial = self.trial
        trial.set_user_attr(OBJECTIVE_ATTR, value)
        trial.set_user_attr(STEP_ATTR, step)
        if self.spec.get(SEED_INDEX_KEY, 0):  # a trial's later seeds: its first seed's curve was the one judged
            return None
        trial.report(value, step)
        if trial.should_prune():
            trial.set_user_attr(OUTCOME_ATTR, "pruned")
            return "prune", ""
        return None
