"""One sweep trial: its `contrastlab fit` command line, its process, and how it ended.

The trial runs in a process of its own (so it may use DDP, and a crash or NaN ends that trial only) that dies
with its worker: a child forked from the sweep's warm server (platform/warm.py), which has done the imports
already, or a new interpreter with `--fresh-processes`. It reports to the study itself (pruning.py), and this side
reads what it recorded and its exit code to tell the study the outcome and close its MLflow run.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from contrastlab.compat import study_storage, trial_id
from contrastlab.platform.exits import USER_ERROR_EXIT
from contrastlab.platform.warm import WarmProcesses
from contrastlab.sweeps import runs
from contrastlab.sweeps.config import GRID_BASE, SweepConfig
from contrastlab.sweeps.space import overrides
from contrastlab.sweeps.storage import (
    OBJECTIVE_ATTR,
    OUTCOME_ATTR,
    REASON_ATTR,
    RUN_ATTR,
    SEED_INDEX_KEY,
    SEED_VALUES_ATTR,
    STEP_ATTR,
    TRAIN_SECONDS_ATTR,
    TRIAL_ENV,
    heartbeats,
)

STOP_ATTR = "stop_reason"  # a study user attr: a trial hit a config error, so every worker stops


@dataclass
class Sweep:
    """What every worker needs, picklable for worker processes."""

    config: SweepConfig
    base_path: Path
    storage_url: str
    tracking_uri: str
    parent_run_id: str
    n_trials: int | None
    deadline: float | None
    fresh_processes: bool = False
    device_slices: list[str | None] | None = None  # each worker's CUDA_VISIBLE_DEVICES (devices.py)

    def devices_of(self, worker: int) -> str | None:
        return self.device_slices[worker] if self.device_slices else None

    def trial_processes(self) -> WarmProcesses:
        """Where a worker runs its trials: children of a server that imported what a trial of this sweep imports."""
        bases = [self.config.base_config({GRID_BASE: name}) for name in self.config.bases] or [
            self.config.base_config()
        ]
        classes = [(base.get(key) or {}).get("class_path", "") for base in bases for key in ("model", "data")]
        preload = ["contrastlab.platform.cli", "contrastlab.sweeps.pruning"]
        preload += [path.rsplit(".", 1)[0] for path in classes if isinstance(path, str) and "." in path]
        return WarmProcesses(preload, entry="contrastlab.cli:main", main_module="contrastlab",
                             fresh=self.fresh_processes)  # fmt: skip


def trial_command(
    sweep: Sweep, number: int, params: dict, devices: str | None = None, seed: int | None = None
) -> list[str]:
    config = sweep.config
    base = config.base_of(params)
    tags = {
        **(config.base_config(params).get("tracking") or {}).get("tags", {}),
        **runs.child_tags(sweep.parent_run_id, config.name, number, seed),
    }
    return [
        "fit", "-c", str(base if isinstance(base, Path) else sweep.base_path),
        *overrides(config.fixed),
        *overrides(config.run_keys(params)),
        *(["--seed_everything", str(seed)] if seed is not None else []),
        "--trainer.callbacks+=contrastlab.sweeps.pruning.TrialReporter",
        "--tracking.uri", sweep.tracking_uri,
        "--tracking.experiment", config.name,
        "--tracking.run_name",
        runs.trial_run_name(number, runs.method_of(config.base_config(params)), "running", seed=seed),
        "--tracking.tags", json.dumps(tags),
        "--test_after_fit", "false",
        *(["--trainer.devices", str(len(devices.split(",")))] if devices else []),
    ]  # fmt: skip


@dataclass
class Fit:
    """How one of a trial's fits (one per seed) ended."""

    state: str  # complete, pruned, failed or config
    value: float | None
    reason: str | None
    attrs: dict


def _run_trial(sweep: Sweep, study, trial, client, processes: WarmProcesses, devices: str | None) -> None:
    """Train the trial once, or once per seed (stopping at the first that does not complete); tell the study
    its objective: the value, or the seeds' mean."""
    from optuna.trial import TrialState

    config, number = sweep.config, trial.number
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    print(f"trial {number} started: {shown}", flush=True)
    started = time.time()
    beat = heartbeats(study_storage(study), trial_id(trial))
    values: dict[int, float] = {}
    try:
        for index, seed in enumerate(config.seeds or [None]):
            fit = _run_fit(sweep, study, trial, client, processes, devices, seed, index)
            if fit.state != "complete":
                break
            if seed is not None:
                values[seed] = fit.value
                trial.set_user_attr(SEED_VALUES_ATTR, {str(s): v for s, v in values.items()})
    finally:
        if beat is not None:
            beat.set()
    state, reason = fit.state, fit.reason
    value = statistics.fmean(values.values()) if values and state == "complete" else fit.value
    if state == "config":
        study.set_user_attr(STOP_ATTR, f"trial {number}: {reason}")
        state = "failed"
    if study_storage(study).get_trial(trial_id(trial)).state == TrialState.RUNNING:
        if reason:
            trial.set_user_attr(REASON_ATTR, reason)
        if state == "complete":
            study.tell(trial, value)
        else:
            study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
    took = time.time() - started
    if len(values) > 1:
        result = f"{config.metric}={value:.4f} ± {statistics.stdev(values.values()):.4f} over seeds {list(values)}"
    else:
        result = f"{config.metric}={value:.4f}" if value is not None else (reason or "")
    training = fit.attrs.get(TRAIN_SECONDS_ATTR) if not config.seeds else None
    spent = f"{took:.0f} s" + (f" ({training:.0f} s of it training)" if training is not None else "")
    print(f"trial {number} {state} in {spent}: {result}", flush=True)


def _run_fit(
    sweep: Sweep, study, trial, client, processes: WarmProcesses, devices: str | None, seed: int | None, index: int
) -> Fit:
    """One `fit` of the trial in its own process, its MLflow run closed with how it ended."""
    config, number = sweep.config, trial.number
    if index:  # a later seed starts afresh: nothing of the seed before it may pass for its own
        for attr in (OBJECTIVE_ATTR, OUTCOME_ATTR, RUN_ATTR, TRAIN_SECONDS_ATTR):
            trial.set_user_attr(attr, None)
    env = {**os.environ, TRIAL_ENV: json.dumps({
        "storage": sweep.storage_url, "study": config.name, "trial_id": trial_id(trial),
        "metric": config.metric, "pruner": config.pruner, SEED_INDEX_KEY: index})}  # fmt: skip
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=f"trial-{number}-") as folder:
        log_path = Path(folder) / "trial.log"
        code = processes.run(trial_command(sweep, number, trial.params, devices, seed), env, log_path)
        attrs = study_storage(study).get_trial(trial_id(trial)).user_attrs
        state, value, reason = _decide(code, attrs, log_path, config.metric)
        run_id = attrs.get(RUN_ATTR)
        if run_id:
            client.log_artifact(run_id, str(log_path))
            closed = "failed" if state == "config" else state
            runs.close_child(client, client.get_run(run_id), closed, reason, value, attrs.get(STEP_ATTR), config.metric)
    if seed is not None:
        result = f"{config.metric}={value:.4f}" if value is not None else (reason or "")
        print(f"trial {number} seed {seed} {state} in {time.time() - started:.0f} s: {result}", flush=True)
    return Fit(state, value, reason, attrs)


def _decide(code: int, attrs: dict, log_path: Path, metric: str) -> tuple[str, float | None, str | None]:
    """How a trial ended, from its exit code and what it recorded: (state, objective, reason)."""
    value = attrs.get(OBJECTIVE_ATTR)
    if attrs.get(OUTCOME_ATTR) == "pruned" and code == 0:
        return "pruned", value, None
    if attrs.get(OUTCOME_ATTR) == "failed":
        return "failed", None, attrs.get(REASON_ATTR)
    if code == USER_ERROR_EXIT:
        return "config", None, _error_line(log_path)
    if code != 0:
        return "failed", None, f"trial process exited with {code}: {_error_line(log_path)}"
    if value is None:
        return (
            "failed",
            None,
            (f"no validation reported {metric}: let trainer.check_val_every_n_epoch divide trainer.max_epochs"),
        )
    return "complete", value, None


def _error_line(log_path: Path) -> str:
    """The line that says what went wrong: our one-line error, else the last line of the trial's output."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("contrastlab: error:"):
            return line[len("contrastlab: error:") :].strip()
    return lines[-1][:500] if lines else "no output"
