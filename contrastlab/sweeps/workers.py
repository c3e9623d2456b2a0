"""Sweep workers: each takes trials from the study, one at a time, until the sweep is done.

`--workers N` runs N workers, each giving its trials 1/N of the cores: one in the command's own process and N - 1
spawned processes, each dying with the command's process. One warm server forks every worker's trials. Taking a
trial is serialised per machine (a file lock beside a SQLite storage) and a trial asked past `n_trials` by two
workers at once is closed unrun.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time

import numpy as np

from contrastlab.compat import study_storage, trial_id
from contrastlab.errors import find_user_error
from contrastlab.platform.cpus import share_cores
from contrastlab.platform.exits import USER_ERROR_EXIT
from contrastlab.platform.parents import die_with_parent
from contrastlab.platform.warm import SOCKET_ENV
from contrastlab.sweeps import runs
from contrastlab.sweeps.storage import (
    SURPLUS_ATTR,
    WORKER_ATTR,
    claim_lock,
    open_storage,
    outcome,
    recover_dead_trials,
    retried_numbers,
    this_worker,
)
from contrastlab.sweeps.trial import STOP_ATTR, Sweep, _run_trial

IDLE_POLL = 1.0  # seconds between looks at the study while other workers finish the last trials
READY_TIMEOUT = 120.0  # seconds a worker waits for the others to start before it takes a trial anyway


def _run_workers(sweep: Sweep, workers: int) -> list[int]:
    """Exit codes of the `workers` workers: this process is worker 0, the others are spawned (one interpreter fewer
    to start: a worker's imports and store connections cost seconds of CPU)."""
    if workers == 1:
        return [worker_loop(sweep, 0)]
    # One warm server forks every worker's trials: its imports are paid once, not once per worker.
    shared = sweep.trial_processes()
    shared.start_server()
    if shared.server is not None:
        os.environ[SOCKET_ENV] = shared.server  # the workers' clients connect to it
    context = multiprocessing.get_context("spawn")
    # Every worker takes its first trial once all have started: N workers run N trials from the start, rather than
    # the first worker taking the first trials while the others still import.
    ready = context.Barrier(workers)
    processes = [
        context.Process(target=_worker_process, args=(sweep, i, workers, ready), name=f"sweep-worker-{i}")
        for i in range(1, workers)
    ]
    try:
        for process in processes:
            process.start()
        share_cores(workers)  # after the spawns, which set their own: this worker's trials inherit it
        codes = [_worker_code(sweep, 0, ready)]
        for process in processes:
            process.join()
    finally:
        shared.close()
    return codes + [process.exitcode or 0 for process in processes]


def _worker_process(sweep: Sweep, index: int, workers: int, ready) -> None:
    die_with_parent()
    share_cores(workers)  # its trials inherit the environment
    raise SystemExit(_worker_code(sweep, index, ready))


def _worker_code(sweep: Sweep, index: int, ready=None) -> int:
    """`worker_loop`'s exit code: a user error is one line and USER_ERROR_EXIT, Ctrl-C 130."""
    try:
        return worker_loop(sweep, index, ready)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        err = find_user_error(exc)
        if err is None:
            raise
        print(f"contrastlab: error: {err}", file=sys.stderr)
        return USER_ERROR_EXIT


def worker_loop(sweep: Sweep, index: int, ready=None) -> int:
    """Run trials until the study holds n_trials finished ones, the time is up, or a trial hits a config error;
    the first once every worker has reached `ready` (a barrier), or after READY_TIMEOUT."""
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
    runs.ensure_experiment(client, sweep.tracking_uri, config.name)
    processes = sweep.trial_processes()  # its server starts with the first trial: a worker may get none
    if ready is not None:
        with contextlib.suppress(threading.BrokenBarrierError):  # a worker that died before it: go on without it
            ready.wait(READY_TIMEOUT)
    try:
        while True:
            with claim_lock(sweep.storage_url):
                done, trial = _claim_next_trial(sweep, study, distributions)
            if done:
                return 0
            if trial is None:
                time.sleep(IDLE_POLL)  # the last trials run elsewhere; a dead worker's one comes back as waiting
                continue
            _run_trial(sweep, study, trial, client, processes, sweep.devices_of(index))
    finally:
        processes.close()


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
    mine = study_storage(study).get_trial(trial_id(trial))
    return held >= n_trials and "retry_history" not in mine.system_attrs
