"""MLflow tracking: where the store is, how runs are named and tagged, and how a run is continued.

The default store is embedded: `sqlite:///mlruns/mlflow.db` with artifacts in `mlruns/artifacts`,
relative to the working directory. A team sets `--tracking-uri` (or MLFLOW_TRACKING_URI) to a server.
We always pass the URI explicitly: Lightning's MLFlowLogger falls back to a `file:` store, which
MLflow 3 no longer supports.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from contrastlab import compat
from contrastlab.contract import MOVED_CLASSES
from contrastlab.errors import ConfigError
from contrastlab.platform import stores

DEFAULT_STORE_DIR = Path("mlruns")
SQLITE_PREFIX = "sqlite:///"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
TRACKED_PACKAGES = ("contrastlab", "torch", "lightning", "mlflow", "timm", "kornia", "torchmetrics", "optuna")
# Keys that may change when a run is resumed: how long and where it trains, not what it trains.
RESUMABLE_KEYS = (
    "config",
    "ckpt_path",
    "resume",
    "tracking.",
    "test_after_fit",
    "data.num_workers",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.accelerator",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "trainer.callbacks",
    "trainer.logger",
    "trainer.default_root_dir",
)


@dataclass
class TrackingConfig:
    """Where and how a run is tracked.

    Args:
        uri: MLflow tracking URI; default MLFLOW_TRACKING_URI, else the embedded `sqlite:///mlruns/mlflow.db`.
        experiment: MLflow experiment; default the dataset's name.
        run_name: default `<method>-<dataset>-<date>-<time>`.
        checkpoint_dir: checkpoints go to `<checkpoint_dir>/<experiment>/<run id>/`.
        checkpoint_every_n_steps: also refresh `last.ckpt` within an epoch every N optimiser steps (0: off).
        checkpoint_every_minutes: ... and every this many minutes (0: off).
        system_metrics_interval: seconds between CPU/memory/GPU samples; 0 turns them off.
        log_checkpoints: copy the best and last checkpoints into the run's artifacts when it ends.
        tags: extra tags for the run.
    """

    uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    checkpoint_dir: str = "checkpoints"
    checkpoint_every_n_steps: int = 0
    checkpoint_every_minutes: float = 30.0
    system_metrics_interval: float = 5.0
    log_checkpoints: bool = True
    tags: dict[str, str] = field(default_factory=dict)


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use, its store ready (see `stores.prepare_tracking_store`) and its secrets
    moved out of it where MLflow allows."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE_PREFIX}{DEFAULT_STORE_DIR}/mlflow.db"
    if uri.startswith("file:") or "://" not in uri:
        raise ConfigError(
            f"tracking.uri={stores.redact(uri)!r}: MLflow's file store is no longer supported; use the default "
            f"{SQLITE_PREFIX}mlruns/mlflow.db, another sqlite:/// path, or an http(s):// server"
        )
    return stores.prepare_tracking_store(uri)


def artifact_location(uri: str, experiment: str) -> str | None:
    """For an embedded store, `<store dir>/artifacts/<experiment>` as a file URI; a server picks its own."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    root = Path(uri[len(SQLITE_PREFIX) :]).resolve().parent / "artifacts"
    return (root / safe_name(experiment)).as_uri()


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "default"


def git_commit(path: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path or Path.cwd(), capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        module = sys.modules.get(name)
        if getattr(module, "__version__", None):  # torch's carries its build, e.g. 2.5.1+cu124
            versions[name] = str(module.__version__)
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_tags(method: str, modality: str, dataset: str, backbone: str, extra: dict[str, str]) -> dict[str, str]:
    tags = {
        "method": method,
        "modality": modality,
        "dataset": dataset,
        "backbone": backbone,
        "host": socket.gethostname(),
    }
    commit = git_commit() or git_commit(Path(__file__).resolve().parent)
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    tags.update(extra)
    return tags


def default_run_name(method: str, dataset: str) -> str:
    return f"{method}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: `model.temperature`, `model.optimizer.lr`, with a component's
    class path under its own key (`model` -> `contrastlab.modules.SimCLR`)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "class_path" in value:
            flat[name] = str(value["class_path"])
            flat.update(flatten_config(value.get("init_args") or {}, f"{name}."))
        elif isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = stores.redact_text(str(value))[:MAX_PARAM_LENGTH]
    return flat


def run_params(config: dict[str, Any]) -> dict[str, str]:
    """The params a run records: the flattened config minus what only says how to launch it."""
    skip = ("config", "ckpt_path", "resume", "resume_allow_changes")
    return {
        k: v
        for k, v in flatten_config(config).items()
        if k.split(".")[0] not in skip and not k.endswith(".data_info")  # data_info is linked from data
    }


def changed_params(logged: dict[str, str], current: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """Params whose value differs between a logged run and the current config, ignoring RESUMABLE_KEYS and a class
    path that only moved (`contract.MOVED_CLASSES`)."""
    changed = {}
    for key in sorted(set(logged) | set(current)):
        if key.startswith(RESUMABLE_KEYS):
            continue
        if MOVED_CLASSES.get(logged.get(key), logged.get(key)) != current.get(key):
            changed[key] = (logged.get(key), current.get(key))
    return changed


class RunLogger(MLFlowLogger):
    """MLFlowLogger that continues a run without duplicating steps, logs `epoch` once per step, marks a
    pre-empted run KILLED rather than FAILED, and opens its run only when it is first used.

    Lightning asks every logger for its `experiment` while setting up, which for MLFlowLogger creates the
    run (or takes over a resumed one, and marks it FAILED if setting up then fails). Here the run is
    opened when its id is first asked for or something is logged: the callbacks do so at the first
    training step, so a mistake found while setting up leaves no empty run, and a resumed run as it was.

    Every metric keeps one value per step: the logger drops a metric's step at or before the last one it
    holds. Lightning adds `epoch` to every metrics dict it logs, so a plain MLFlowLogger writes it several
    times at the same step; a checkpoint at a batch's end logs that batch's metrics before Lightning does
    (RunCheckpoint). A run killed after its last checkpoint has logged steps that the resumed run trains
    again, with the same values since the resume is exact; with `skip_logged_steps` the logger first reads
    the steps the run already holds.
    """

    def __init__(self, *args, resumed: bool = False, skip_logged_steps: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.resumed, self.skip_logged_steps = resumed, skip_logged_steps
        self.preempted = False
        self._opened = False
        self._logged_through: dict[str, int] | None = None  # each metric's last logged step

    @property
    def experiment(self):
        if not self._opened:
            return compat.mlflow_logger_client(self)  # a client of the same store, without touching any run
        from mlflow.exceptions import MlflowException

        try:
            return super().experiment
        except MlflowException as err:
            # Fits started together on a new experiment: another one created it between Lightning's lookup and
            # its create. The lookup now finds it, and this run goes into it.
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return super().experiment

    @property
    def run_id(self) -> str | None:
        self._opened = True
        return super().run_id

    @property
    def experiment_id(self) -> str | None:
        self._opened = True
        return super().experiment_id

    def _last_logged_steps(self) -> dict[str, int]:
        client, run_id = self.experiment, self.run_id
        keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("system/")]
        return {key: max(m.step for m in client.get_metric_history(run_id, key)) for key in keys}

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        if params:
            self._opened = True
            super().log_hyperparams(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._opened = True
        if self._logged_through is None:
            self._logged_through = self._last_logged_steps() if self.skip_logged_steps else {}
        if step is not None:
            metrics = {k: v for k, v in metrics.items() if step > self._logged_through.get(k, -1)}
            self._logged_through.update(dict.fromkeys(metrics, step))
        if metrics:
            super().log_metrics(metrics, step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        super().finalize("KILLED" if self.preempted else status)
