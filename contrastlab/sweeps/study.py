"""`contrastlab sweep -c configs/sweeps/<name>.yaml`: an Optuna study whose every trial is a tracked run.

The command checks the sweep config against the run CLI, creates or loads the study (running the same
command again resumes it), closes what a dead worker left behind, and starts `--workers` processes. Each
worker asks the study for a trial, runs `contrastlab fit -c <base> <overrides>` in a child process (so a
trial may use DDP, and a crash or NaN ends that trial only), and tells the study how it ended. When the
workers are done, the parent MLflow run gets the summary (report.py) and the best trial is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from contrastlab.errors import ConfigError
from contrastlab.platform import tracking
from contrastlab.platform.exits import USER_ERROR_EXIT, user_error_exit
from contrastlab.platform.stores import redact
from contrastlab.sweeps import devices, runs
from contrastlab.sweeps.config import SweepConfig, load_sweep
from contrastlab.sweeps.live import live_table
from contrastlab.sweeps.report import tied_with
from contrastlab.sweeps.space import check_keys
from contrastlab.sweeps.storage import open_storage, recover_dead_trials, resolve_storage
from contrastlab.sweeps.summary import _print_best, _summarise
from contrastlab.sweeps.trial import STOP_ATTR, Sweep
from contrastlab.sweeps.workers import _run_workers


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
    parser.add_argument(
        "--devices-per-trial",
        type=int,
        default=None,
        help="accelerators each trial uses (default: the trial config's trainer.devices, else each worker's share)",
    )
    parser.add_argument(
        "--accelerators",
        default=None,
        help="the GPUs this sweep hands out, comma-separated as CUDA_VISIBLE_DEVICES names them "
        "(default: every visible one); each worker's trials get a slice of their own",
    )
    parser.add_argument(
        "--fresh-processes",
        action="store_true",
        help="start each trial in a new interpreter instead of forking it from the sweep's warm server",
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
    if args.devices_per_trial is not None and args.devices_per_trial < 1:
        raise ConfigError(f"--devices-per-trial {args.devices_per_trial}: give 1 or more")
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
        code = user_error_exit(exc)
        if code is None:
            raise
        return code


def _device_slices(config, args: argparse.Namespace) -> list[str | None]:
    """Each worker's CUDA_VISIBLE_DEVICES (None on a machine without accelerators)."""
    if args.accelerators is not None:
        accelerators = [name.strip() for name in args.accelerators.split(",") if name.strip()]
    else:
        accelerators = devices.visible_accelerators()
    configured = config.fixed.get("trainer.devices", (config.base_config().get("trainer") or {}).get("devices"))
    per_trial = args.devices_per_trial or devices.trial_devices(configured)
    return devices.worker_slices(args.workers, per_trial, accelerators)


def run(args: argparse.Namespace) -> int:
    config = load_sweep(args.config)
    entries = {key: [value] for key, value in config.fixed.items()}
    searched = {key: param.probe_values() for key, param in config.run_keys(config.space).items()}
    for base in config.all_bases():  # each grid base must take every key
        check_keys(base, entries, "fixed")
        check_keys(base, searched, "grid" if config.grid else "space")
    n_trials = args.n_trials or config.n_trials
    timeout = args.timeout or config.timeout
    if n_trials is None and timeout is None:
        raise ConfigError(f"{args.config}: set n_trials or timeout (or pass --n-trials / --timeout)")
    slices = _device_slices(config, args)
    storage_url = resolve_storage(args.storage or config.storage)
    # the base config's own store, when it names one, unless the command line says otherwise
    tracking_uri = tracking.resolve_uri(args.tracking_uri or (config.base_config().get("tracking") or {}).get("uri"))

    study = _load_study(config, storage_url)
    if study.user_attrs.get(STOP_ATTR):
        study.set_user_attr(STOP_ATTR, None)  # the user has seen that error; this run tries again
    revived = recover_dead_trials(study)  # before the config's new trials, so that lost work runs first
    if revived:
        print(f"trials {revived} lost their worker: queued again", flush=True)
    for params in config.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)  # so a rerun does not queue them twice
    client = runs.client_for(tracking_uri)
    experiment_id = runs.ensure_experiment(client, tracking_uri, config.name)
    runs.reconcile(client, experiment_id, study)
    parent = runs.ensure_parent_run(
        client,
        experiment_id,
        config.name,
        {**_parent_tags(config), "sweep.storage": redact(storage_url), "sweep.config": str(args.config)},
    )
    client.log_text(parent, config.path.read_text(), "sweep.yaml")  # the study's settings, as written
    print(
        f"sweep {config.name!r}: study in {redact(storage_url)}, runs in {redact(tracking_uri)} (parent run {parent})",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="contrastlab-sweep-") as folder:
        base_path = config.base if isinstance(config.base, Path) else Path(folder) / "base.yaml"
        if not isinstance(config.base, Path):
            base_path.write_text(yaml.safe_dump(config.base, sort_keys=False))
        sweep = Sweep(
            config,
            base_path,
            storage_url,
            tracking_uri,
            parent,
            n_trials,
            time.time() + timeout if timeout else None,
            fresh_processes=args.fresh_processes,
            device_slices=slices,
        )
        with live_table(sweep, args.workers):  # on a terminal: the study's standing below the workers' lines
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
    _print_best(best, config, tracking_uri, storage_url, experiment_id, parent, tied_with(study, best))
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


def _parent_tags(config: SweepConfig) -> dict[str, str]:
    """The study's settings that fit a tag; the whole of them is the parent's `sweep.yaml`."""
    return {
        "sweep.objective": f"{config.metric} ({config.direction})",
        "sweep.base": ", ".join(str(b) if isinstance(b, Path) else "inline" for b in config.all_bases()),
        "sweep.space": ", ".join(config.space),
        "sweep.sampler": json.dumps(config.sampler),
        **({"sweep.seeds": json.dumps(config.seeds)} if config.seeds else {}),
        "sweep.pruner": json.dumps(config.pruner),
    }
