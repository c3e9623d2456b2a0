"""`contrastlab sweep -c configs/sweeps/<name>.yaml`: an Optuna study whose every trial is a tracked run.

The command checks the sweep config against the run CLI, creates or loads the study (running the same
command again resumes it), closes what a dead worker left behind, and starts `--workers` processes. Each
worker asks the study for a trial, runs `contrastlab fit -c <base> <overrides>` in a child process (so a
trial may use DDP, and a crash or NaN ends that trial only), and tells the study how it ended. When the
workers are done, the parent MLflow run gets the summary (report.py) and the best trial is printed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from contrastlab.errors import ConfigError, find_user_error
from contrastlab.platform import tracking
from contrastlab.platform.cpus import share_cores
from contrastlab.platform.stores import sqlite_path
from contrastlab.sweeps import runs
from contrastlab.sweeps.config import SweepConfig, load_sweep
from contrastlab.sweeps.pruning import OBJECTIVE_ATTR, OUTCOME_ATTR, RUN_ATTR, TRIAL_ENV
from contrastlab.sweeps.space import check_keys, overrides
from contrastlab.sweeps.storage import (
    JOURNAL_PREFIX,
    REASON_ATTR,
    SURPLUS_ATTR,
    WORKER_ATTR,
    claim_lock,
    heartbeats,
    open_storage,
    outcome,
    recover_dead_trials,
    redact,
    resolve_storage,
    retried_numbers,
    this_worker,
)

STOP_ATTR = "stop_reason"  # a study user attr: a trial hit a config error, so every worker stops
IDLE_POLL = 5.0  # seconds between looks at the study while other workers finish the last trials
USER_ERROR_EXIT = 2  # `contrastlab fit` exits 2 on a config, data or checkpoint mistake
DEFAULT_TRACKING = f"{tracking.SQLITE_PREFIX}{tracking.DEFAULT_STORE_DIR}/mlflow.db"


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


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="contrastlab sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-c", "--config", required=True, help="the sweep config, e.g. configs/sweeps/simclr_digits.yaml"
    )
    parser.add_argument("--workers", type=int, default=1, help="trials run at once on this machine (processes)")
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: the config's, else "
        "sqlite:///mlruns/optuna.db); postgresql://... to share a study across machines",
    )
    parser.add_argument("--n-trials", type=int, default=None, help="finished trials the study should hold")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more worker processes")
    if args.n_trials is not None and args.n_trials < 1:
        raise ConfigError(f"--n-trials {args.n_trials}: give 1 or more")
    return args


def main(argv: list[str]) -> int:
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    try:
        return run(parse_args(argv))
    except KeyboardInterrupt:
        print("contrastlab: sweep interrupted; run the same command again to resume it", file=sys.stderr)
        return 130
    except Exception as exc:
        err = find_user_error(exc)
        if err is None:
            raise
        print(f"contrastlab: error: {err}", file=sys.stderr)
        return USER_ERROR_EXIT


def run(args: argparse.Namespace) -> int:
    config = load_sweep(args.config)
    entries = {key: [value] for key, value in config.fixed.items()}
    check_keys(config.base, entries, "fixed")
    check_keys(config.base, {key: param.probe_values() for key, param in config.space.items()}, "space")
    n_trials = args.n_trials or config.n_trials
    timeout = args.timeout or config.timeout
    if n_trials is None and timeout is None:
        raise ConfigError(f"{args.config}: set n_trials or timeout (or pass --n-trials / --timeout)")
    storage_url = resolve_storage(args.storage or config.storage)
    # the base config's own store, when it names one, unless the command line says otherwise
    tracking_uri = tracking.resolve_uri(args.tracking_uri or (config.base_config().get("tracking") or {}).get("uri"))

    study = _load_study(config, storage_url)
    if study.user_attrs.get(STOP_ATTR):
        study.set_user_attr(STOP_ATTR, None)  # the user has seen that error; this run tries again
    for params in config.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)  # so a rerun does not queue them twice
    client = runs.client_for(tracking_uri)
    experiment_id = runs.ensure_experiment(client, tracking_uri, config.name)
    revived = recover_dead_trials(study)
    if revived:
        print(f"trials {revived} lost their worker: queued again", flush=True)
    runs.reconcile(client, experiment_id, study)
    parent = runs.ensure_parent_run(
        client,
        experiment_id,
        config.name,
        _parent_params(config),
        {"sweep.storage": redact(storage_url), "sweep.config": str(args.config)},
    )
    print(
        f"sweep {config.name!r}: study in {redact(storage_url)}, runs in {redact(tracking_uri)} (parent run {parent})",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="contrastlab-sweep-") as folder:
        base_path = config.base if isinstance(config.base, Path) else Path(folder) / "base.yaml"
        if not isinstance(config.base, Path):
            base_path.write_text(yaml.safe_dump(config.base, sort_keys=False))
        sweep = Sweep(
            config, base_path, storage_url, tracking_uri, parent, n_trials, time.time() + timeout if timeout else None
        )
        codes = _run_workers(sweep, args.workers)

    study = _load_study(config, storage_url)
    recover_dead_trials(study)
    still_running = runs.reconcile(client, experiment_id, study)
    best = _summarise(client, parent, study, config, still_running)
    stop = study.user_attrs.get(STOP_ATTR)
    if stop:
        print(f"contrastlab: error: {stop}", file=sys.stderr)
        return USER_ERROR_EXIT
    if any(codes):
        print(f"contrastlab: a sweep worker exited with {max(codes)}; rerun the command to resume", file=sys.stderr)
        return 1
    _print_best(best, config, tracking_uri, storage_url)
    return 0


def _load_study(config: SweepConfig, storage_url: str):
    import optuna

    storage = open_storage(storage_url, heartbeat=True)
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        direction=config.direction,
        sampler=config.make_sampler(),
        pruner=config.make_pruner(),
        load_if_exists=True,
    )
    direction = study.direction.name.lower()
    if direction != config.direction:
        raise ConfigError(
            f"objective.direction: study {config.name!r} in {redact(storage_url)} is to {direction}, "
            f"the config says {config.direction}: give the sweep another name"
        )
    metric = study.user_attrs.get("metric")
    if metric is None:
        study.set_user_attr("metric", config.metric)
    elif metric != config.metric:
        raise ConfigError(
            f"objective.metric: study {config.name!r} optimises {metric}, the config says {config.metric}: "
            "give the sweep another name"
        )
    return study


def _parent_params(config: SweepConfig) -> dict[str, str]:
    params = {
        "objective.metric": config.metric,
        "objective.direction": config.direction,
        "base": str(config.base) if isinstance(config.base, Path) else "inline",
        "sampler": json.dumps(config.sampler),
        "pruner": json.dumps(config.pruner),
    }
    params.update({f"space.{key}": json.dumps(param.__dict__, default=str) for key, param in config.space.items()})
    params.update({f"fixed.{key}": json.dumps(value) for key, value in config.fixed.items()})
    return params


# -- workers ------------------------------------------------------------------------------------------


def _run_workers(sweep: Sweep, workers: int) -> list[int]:
    if workers == 1:
        return [worker_loop(sweep, 0)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_process, args=(sweep, i, workers), name=f"sweep-worker-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return [process.exitcode or 0 for process in processes]


def _worker_process(sweep: Sweep, index: int, workers: int) -> None:
    _die_with_parent()
    share_cores(workers)  # its trials inherit the environment
    try:
        code = worker_loop(sweep, index)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        err = find_user_error(exc)
        if err is None:
            raise
        print(f"contrastlab: error: {err}", file=sys.stderr)
        code = USER_ERROR_EXIT
    raise SystemExit(code)


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies, so no trial outlives its worker."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_loop(sweep: Sweep, index: int) -> int:
    """Run trials until the study holds n_trials finished ones, the time is up, or a trial hits a config error."""
    import optuna

    config = sweep.config
    storage = open_storage(sweep.storage_url, heartbeat=True)
    existing = len(storage.get_all_trials(storage.get_study_id_from_name(config.name), deepcopy=False))
    # Workers, and reruns of the command, must not replay one random stream: each draws its own.
    seed = config.sampler.get("seed")
    if seed is not None:
        seed = int(np.random.SeedSequence([seed, index, existing]).generate_state(1)[0])
    study = optuna.load_study(
        study_name=config.name, storage=storage, sampler=config.make_sampler(seed), pruner=config.make_pruner()
    )
    distributions = {key: param.distribution() for key, param in config.space.items()}
    client = runs.client_for(sweep.tracking_uri)
    experiment_id = runs.ensure_experiment(client, sweep.tracking_uri, config.name)

    while True:
        with claim_lock(sweep.storage_url):
            done, trial = _claim_next_trial(sweep, study, distributions)
        if done:
            return 0
        if trial is None:
            time.sleep(IDLE_POLL)  # the last trials run elsewhere; a dead worker's one comes back as waiting
            continue
        _run_trial(sweep, study, trial, client, experiment_id)


def _claim_next_trial(sweep: Sweep, study, distributions: dict):
    """(True, None) when the sweep is done; (False, None) when there is nothing to take now; else the trial."""
    from optuna.trial import TrialState

    recover_dead_trials(study)
    if study.user_attrs.get(STOP_ATTR):
        return True, None
    finished, running, waiting = _counts(study.get_trials(deepcopy=False))
    if sweep.n_trials is not None and finished >= sweep.n_trials:
        return True, None
    if sweep.deadline is not None and time.time() >= sweep.deadline:
        return True, None
    if not waiting and sweep.n_trials is not None and finished + running >= sweep.n_trials:
        return False, None
    trial = study.ask(distributions)
    trial.set_user_attr(WORKER_ATTR, this_worker())
    if _is_surplus(study, trial, sweep.n_trials):
        trial.set_user_attr(SURPLUS_ATTR, True)
        study.tell(trial, state=TrialState.FAIL)
        return False, None
    return False, trial


def _counts(trials) -> tuple[int, int, int]:
    from optuna.trial import TrialState

    retried = retried_numbers(trials)
    finished = sum(outcome(t, retried) in ("complete", "pruned", "failed") for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return finished, running, waiting


def _is_surplus(study, trial, n_trials: int | None) -> bool:
    """True when workers asked at the same moment past n_trials and this new trial is the later one.

    Slots are counted without new trials numbered after this one; a retry holds its original's slot.
    """
    from optuna.trial import TrialState

    if n_trials is None:
        return False
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    held = 0
    for t in trials:
        if t.number == trial.number:
            continue
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            if t.number < trial.number or "retry_history" in t.system_attrs:
                held += 1
        elif outcome(t, retried) in ("complete", "pruned", "failed"):
            held += 1
    mine = study._storage.get_trial(trial._trial_id)
    return held >= n_trials and "retry_history" not in mine.system_attrs


def trial_command(sweep: Sweep, number: int, params: dict) -> list[str]:
    config = sweep.config
    tags = {
        **(config.base_config().get("tracking") or {}).get("tags", {}),
        **runs.child_tags(sweep.parent_run_id, config.name, number),
    }
    return [
        sys.executable, "-m", "contrastlab", "fit", "-c", str(sweep.base_path),
        *overrides(config.fixed),
        *overrides(params),
        "--trainer.callbacks+=contrastlab.sweeps.pruning.TrialReporter",
        "--tracking.uri", sweep.tracking_uri,
        "--tracking.experiment", config.name,
        "--tracking.run_name", f"trial-{number}",
        "--tracking.tags", json.dumps(tags),
        "--test_after_fit", "false",
    ]  # fmt: skip


def _run_trial(sweep: Sweep, study, trial, client, experiment_id: str) -> None:
    from optuna.trial import TrialState

    config, number = sweep.config, trial.number
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    print(f"trial {number} started: {shown}", flush=True)
    env = {**os.environ, TRIAL_ENV: json.dumps({
        "storage": sweep.storage_url, "study": config.name, "trial_id": trial._trial_id,
        "metric": config.metric, "pruner": config.pruner})}  # fmt: skip
    started = time.time()
    beat = heartbeats(study._storage, trial._trial_id)
    with tempfile.TemporaryDirectory(prefix=f"trial-{number}-") as folder:
        log_path = Path(folder) / "trial.log"
        try:
            with open(log_path, "w") as log_file:
                code = subprocess.call(
                    trial_command(sweep, number, trial.params),
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
        finally:
            if beat is not None:
                beat.set()
        frozen = study._storage.get_trial(trial._trial_id)
        attrs = frozen.user_attrs
        state, value, reason = _decide(code, attrs, log_path, config.metric)
        if state == "config":
            study.set_user_attr(STOP_ATTR, f"trial {number}: {reason}")
            state = "failed"
        if frozen.state == TrialState.RUNNING:
            if reason:
                trial.set_user_attr(REASON_ATTR, reason)
            if state == "complete":
                study.tell(trial, value)
            else:
                study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        run_id = attrs.get(RUN_ATTR)
        if run_id:
            client.log_artifact(run_id, str(log_path))
            runs.close_child(client, client.get_run(run_id), state, reason, value)
    took = time.time() - started
    result = f"{config.metric}={value:.4f}" if value is not None else (reason or "")
    print(f"trial {number} {state} in {took:.0f} s: {result}", flush=True)


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


# -- the end --------------------------------------------------------------------------------------------


def _summarise(client, parent: str, study, config: SweepConfig, still_running: int):
    from contrastlab.sweeps.report import write_summary

    best = write_summary(client, parent, study, config)
    if not still_running:  # other machines' workers may still be at it
        client.set_terminated(parent, status="FINISHED")
    return best


def dashboard_command(storage_url: str) -> str:
    """optuna-dashboard over the sweep's storage (it takes a journal file by path and storage class)."""
    if storage_url.startswith(JOURNAL_PREFIX):
        return f"optuna-dashboard {storage_url[len(JOURNAL_PREFIX) :]} --storage-class JournalFileStorage"
    return f"optuna-dashboard {redact(storage_url)}"


def _print_best(best, config: SweepConfig, tracking_uri: str, storage_url: str) -> None:
    if best is None:
        print(f"sweep {config.name!r}: no trial completed yet")
        return
    params = "\n".join(f"  {k} = {v}" for k, v in best.params.items())
    default = sqlite_path(tracking_uri) == sqlite_path(DEFAULT_TRACKING).absolute()
    store = "" if default else f" --tracking-uri {redact(tracking_uri)}"
    print(
        f"best trial {best.number}: {config.metric} = {best.value:.4f} (MLflow run {best.user_attrs.get(RUN_ATTR)})\n"
        f"{params}\n"
        f"best config: the parent run's artifact best_config.yaml; trials table: trials.md\n"
        f"browse it: contrastlab ui{store}"
        f"  (then open http://127.0.0.1:5000, experiment {config.name!r})\n"
        f"study dashboard: {dashboard_command(storage_url)}",
        flush=True,
    )
