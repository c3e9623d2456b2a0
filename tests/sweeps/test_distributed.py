"""Two sweep commands (as on two machines) share one study in a real PostgreSQL server on loopback; two workers
share one in Optuna's journal file.

The server is Debian's `postgresql` package (`.ci/run` installs it); the test starts its own cluster in
a temporary folder and skips only where no PostgreSQL binaries can be found.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from contrastlab.sweeps.summary import dashboard_command
from tests.conftest import Started, free_port, give_store, run_cli, start_cli
from tests.sweeps.test_sweep import FIXED, child_runs, write_sweep

pytestmark = pytest.mark.slow


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    import psycopg  # noqa: F401  (a dependency of contrastlab: missing, the fixture fails here)

    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    # initdb refuses to run as root: the cluster belongs to the package's `postgres` user then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as its own user")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="contrastlab-pg-"))
    data = folder / "data"
    if as_user:
        shutil.chown(folder, "postgres")
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def start_sweep(config: Path, storage: str, cwd: Path) -> Started:
    give_store(cwd)
    return start_cli("sweep", "-c", str(config), "--storage", storage, cwd=cwd)


def test_two_workers_share_one_postgresql_study_without_losing_or_repeating_a_trial(tmp_path, postgres_url):
    name = "shared"
    space = {"model.temperature": {"type": "float", "low": 0.1, "high": 0.5}}
    fixed = {**FIXED, "data.max_train_samples": 256}
    config = write_sweep(tmp_path, name, space=space, fixed=fixed, pruner="none", n_trials=3)
    first = start_sweep(config, postgres_url, tmp_path)
    # The second joins once the first has made the study and the MLflow store, as a second machine would.
    deadline = time.monotonic() + 300
    while f"sweep '{name}'" not in first.printed() or "study in postgresql://postgres@127.0.0.1" not in first.printed():
        assert first.poll() is None and time.monotonic() < deadline, first.printed()[-3000:]
        time.sleep(0.1)
    second = start_sweep(config, postgres_url, tmp_path)
    outputs = ["".join(first.communicate(timeout=900)), "".join(second.communicate(timeout=900))]
    # each worker's last lines in full: pytest's diff of the whole list cuts them short, and this test once failed in
    # the suite (worker 1 exited 1) with nothing left to tell why
    assert [first.returncode, second.returncode] == [0, 0], "\n\n".join(o[-4000:] for o in outputs)

    import optuna

    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials)
    workers = {json.loads(t.user_attrs["worker"])["pid"] for t in trials}
    assert workers == {first.pid, second.pid}  # both machines ran trials
    started = [f"trial {n} started" for n in range(3)]
    assert sorted(s for s in started for out in outputs if s in out) == started  # each trial ran once

    client, parents, children = child_runs(tmp_path, name)
    assert len(parents) == 1 and sorted(children) == [0, 1, 2]
    for t in trials:
        run = children[t.number]
        assert run.info.run_id == t.user_attrs["mlflow_run_id"] and run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.metrics["val/knn_top1"] == t.value
    assert parents[0].data.metrics["best_value"] == max(t.value for t in trials)
    # a worker's print of the best trial carries the dashboard command for the same storage
    assert any(f"optuna-dashboard {postgres_url}" in out for out in outputs)


def test_two_workers_share_one_journal_file_study_without_losing_or_repeating_a_trial(tmp_path):
    """Optuna's journal file, for a cluster without a database (the file on a shared filesystem): here the two
    worker processes of one command, each taking a trial."""
    name, storage = "journal", f"journal:{tmp_path / 'study' / 'optuna.log'}"
    fixed = {**FIXED, "data.max_train_samples": 128, "data.batch_size": 128}
    space = {"model.temperature": {"type": "float", "low": 0.1, "high": 0.5}}
    config = write_sweep(tmp_path, name, space=space, fixed=fixed, pruner="none", n_trials=2)
    done = run_cli("sweep", "-c", str(config), "--storage", storage, "--workers", "2", cwd=tmp_path, timeout=600)

    import optuna

    from contrastlab.sweeps.storage import open_storage

    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()
    assert [t.number for t in trials] == [0, 1] and all(t.state.name == "COMPLETE" for t in trials)
    assert len({json.loads(t.user_attrs["worker"])["pid"] for t in trials}) == 2  # one trial each
    assert [done.stdout.count(f"trial {n} started") for n in (0, 1)] == [1, 1]
    _, parents, children = child_runs(tmp_path, name)
    assert len(parents) == 1 and sorted(children) == [0, 1]
    assert dashboard_command(storage) in done.stdout
