"""The Optuna storage of a sweep, and the retry of trials whose worker died.

Default: `sqlite:///mlruns/optuna.db` beside the MLflow store (benchmarks/README.md compares it with
Optuna's journal file under two workers). Any SQLAlchemy URL works (`postgresql://user:pw@host/db` for
workers on several machines); `journal:PATH` selects Optuna's journal file.

A trial whose worker died is failed and queued again with the same parameters, so a rerun or another
worker runs it. A dead worker is seen two ways: on the same host, its process id is gone (immediately);
on any host with an RDB storage, its heartbeat is older than the grace period.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import warnings
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from contrastlab.compat import study_storage, trial_id
from contrastlab.errors import ConfigError
from contrastlab.platform.stores import prepare_sqlite_storage, redact

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
JOURNAL_PREFIX = "journal:"
HEARTBEAT_INTERVAL = 10  # seconds between a worker's heartbeats for its running trial
GRACE_PERIOD = 60  # seconds without a heartbeat after which a trial's worker counts as dead
MAX_RETRIES = 3  # a trial whose worker dies is run again at most this many times
WORKER_ATTR = "worker"  # user attr of a running trial: {"host", "pid", "started"} of its worker
REASON_ATTR = "fail_reason"
SURPLUS_ATTR = "surplus"  # asked by two workers at once past n_trials: closed unrun, not counted
# what a trial's process and its worker tell each other (pruning.TrialReporter writes them); defined here, not
# in pruning.py, so that sweep workers, which start no training, load without Lightning (seconds per worker)
TRIAL_ENV = "CONTRASTLAB_SWEEP_TRIAL"
OUTCOME_ATTR = "outcome"  # set by the trial when it ends itself: pruned or failed
OBJECTIVE_ATTR = "objective"  # the objective at the latest validation
RUN_ATTR = "mlflow_run_id"
STEP_ATTR = "last_step"
SEED_VALUES_ATTR = "seed_values"  # with seeds: {seed: objective} of the seeds trained so far
SEED_INDEX_KEY = "seed_index"  # in TRIAL_ENV: which of the trial's seeds this fit is (only the first one prunes)
TRAIN_SECONDS_ATTR = "train_seconds"  # training and validation: from the first epoch's start to the last one's end
SQLITE_TIMEOUT = 60  # seconds a writer waits for SQLite's lock; trials and workers write concurrently


def quiet_optuna() -> None:
    """Heartbeats and retries are marked experimental; ask/tell with heartbeats warns that it is manual."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def resolve_storage(url: str | None) -> str:
    url = url or DEFAULT_STORAGE
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    elif url.startswith(JOURNAL_PREFIX):
        Path(url[len(JOURNAL_PREFIX) :]).parent.mkdir(parents=True, exist_ok=True)
    elif "://" not in url:
        raise ConfigError(
            f"--storage {url!r}: expected an SQLAlchemy URL (sqlite:///mlruns/optuna.db, "
            "postgresql://user:password@host/db) or journal:PATH"
        )
    return url


def open_storage(url: str, heartbeat: bool = False):
    """The storage at `url`; a worker (`heartbeat=True`) also fails and retries trials gone stale."""
    import optuna

    quiet_optuna()
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX) :]))
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    options: dict[str, Any] = {}
    if heartbeat:
        options = {
            "heartbeat_interval": HEARTBEAT_INTERVAL,
            "grace_period": GRACE_PERIOD,
            "heartbeat_stale_trial_callback": retry_trial,
        }
    try:
        # a new SQLite file gets its tables from one process while the others wait, not from all at once
        return prepare_sqlite_storage(
            url, "--storage", lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **options)
        )
    except ConfigError:
        raise
    except ImportError as err:
        raise ConfigError(
            f"--storage {redact(url)}: no database driver ({err}); for PostgreSQL pip install 'psycopg[binary]'"
        ) from err
    except Exception as err:  # SQLAlchemy raises OperationalError and friends for an unreachable database
        reason = " ".join(str(err).split())[:300]
        raise ConfigError(f"--storage {redact(url)}: cannot open the storage ({reason})") from err


@contextlib.contextmanager
def claim_lock(url: str):
    """Hold while a worker of this machine takes its next trial from a SQLite storage or a journal file.

    Optuna pops a waiting (enqueued or retried) trial with SELECT ... FOR UPDATE, which SQLite ignores, and
    Python's sqlite3 reads outside the write transaction: two workers could both take the same trial (seen
    under load as two runs of one retried trial). SQLite storages are local files, so a file lock beside the
    database serialises the taking; the trials themselves still run side by side. Server databases lock rows.
    """
    if url.startswith(JOURNAL_PREFIX):  # a file too, whose log Optuna appends to under its own lock
        database = url[len(JOURNAL_PREFIX) :]
    else:
        from sqlalchemy.engine import make_url

        database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:":
        yield
        return
    with FileLock(f"{database}.claim.lock"):
        yield


def heartbeats(storage, trial_id: int) -> threading.Event | None:
    """Record the heartbeat of a running trial until the returned event is set (RDB storages only)."""
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is None:
        return None
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(HEARTBEAT_INTERVAL):
                return

    threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}").start()
    return stop


def this_worker() -> str:
    me = psutil.Process()
    return json.dumps({"host": socket.gethostname(), "pid": me.pid, "started": round(me.create_time(), 2)})


def worker_is_dead(worker: str | None) -> bool:
    """True when `worker` ran on this host and its process is gone (or its pid now names another process)."""
    if not worker:
        return False
    info = json.loads(worker)
    if info.get("host") != socket.gethostname():
        return False
    try:
        return round(psutil.Process(info["pid"]).create_time(), 2) != info["started"]
    except psutil.NoSuchProcess:
        return True


def retry_trial(study, trial) -> None:
    """Queue a failed trial again with its parameters; Optuna's retry convention in its system attrs."""
    import optuna

    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRIES:
        return
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": history[0], "retry_history": history},
        )
    )


def recover_dead_trials(study) -> list[int]:
    """Fail and queue again the running trials whose worker died; the numbers of those failed here."""
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)  # heartbeats: RDB storages only, a no-op otherwise
    failed = []
    storage = study_storage(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if not worker_is_dead(worker):
            continue
        info = json.loads(worker)
        try:
            storage.set_trial_user_attr(trial_id(trial), REASON_ATTR, f"worker {info['host']}:{info['pid']} died")
            if storage.set_trial_state_values(trial_id(trial), TrialState.FAIL):
                failed.append(trial.number)
                retry_trial(study, trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
    return failed


def retried_numbers(trials) -> set[int]:
    """Numbers of the failed trials that a later trial runs again: they do not count as finished."""
    return {number for t in trials for number in t.system_attrs.get("retry_history", [])}


def outcome(trial, retried: set[int]) -> str | None:
    """complete, pruned, failed, killed (worker died; retried) or surplus; None while it runs or waits."""
    from optuna.trial import TrialState

    if trial.user_attrs.get(SURPLUS_ATTR):
        return "surplus"
    return {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "killed" if trial.number in retried else "failed",
    }.get(trial.state)
