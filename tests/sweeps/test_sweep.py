"""`contrastlab sweep` as a user runs it: real trial processes, a real Optuna storage and MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import DIGITS_CONFIG, give_store, run_cli, start_cli, store_client
from tests.platform.test_cli import free_port

# Each trial: 2 epochs on at most 300 digits, validated each epoch, nothing sampled or copied that is not needed.
FIXED = {
    "trainer.max_epochs": 2,
    "trainer.check_val_every_n_epoch": 1,
    "model.proj_hidden_dim": 128,
    "tracking.system_metrics_interval": 0,
    "tracking.log_checkpoints": False,
}


def write_sweep(folder: Path, name: str, **changes) -> Path:
    config = {
        "name": name,
        "base": str(DIGITS_CONFIG),
        "fixed": FIXED,
        "space": {
            # a temperature of 1e-40 overflows NT-Xent's logits: the NaN-loss path
            "model.temperature": {"type": "categorical", "choices": [0.2, 0.5, 1.0e-40]},
            # a 20-sample kNN bank scores far below a 300-sample one: the median pruner must prune it
            "data.max_train_samples": {"type": "categorical", "choices": [300, 20]},
            "data.batch_size": {"type": "categorical", "choices": [150, 20]},  # at most the samples there are
        },
        "objective": {"metric": "val/knn_top1", "direction": "maximize"},
        "n_trials": 4,
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        **changes,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def load_trials(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def child_runs(cwd: Path, name: str):
    client = store_client(cwd)
    experiment = client.get_experiment_by_name(name)
    all_runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in all_runs if r.data.tags.get("sweep.role") == "parent"]
    trial_runs = [r for r in all_runs if r.data.tags.get("sweep.role") == "trial"]
    children = {int(r.data.tags["sweep.trial"]): r for r in trial_runs}
    assert len(children) == len(trial_runs), [
        (r.data.tags["sweep.trial"], r.info.run_id, r.info.status) for r in trial_runs
    ]
    return client, parents, children


AS_RUN = {"COMPLETE": ("complete", "FINISHED"), "PRUNED": ("pruned", "FINISHED")}


def wait_for_running_child(cwd: Path, name: str, trial: int, proc: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            _, _, children = child_runs(cwd, name)
            if trial in children and children[trial].info.status == "RUNNING":
                return
        except Exception:  # the store is still being created
            pass
        time.sleep(1)
    raise AssertionError(f"trial {trial} never started a run")


@pytest.mark.slow
def test_sweep_prunes_fails_survives_sigkill_and_resumes(tmp_path):
    """One sweep covers each way a trial ends: trial 0 completes, 1 is pruned (tiny kNN bank), 2 hits a
    NaN loss, 3 is killed with its worker (SIGKILL) and, when the same command runs again (now with two
    workers and one more trial), is retried as trial 4 and completes beside a new trial 5. Then the stores must
    agree with each other. Each command hands out devices (fake ones here, where trials run on the CPU): a
    trial's process sees its worker's slice, and two trials running at once have different ones."""
    name = "tiny"
    tiny_bank = {"data.max_train_samples": 20, "data.batch_size": 20}
    bank = {"data.max_train_samples": 300, "data.batch_size": 150}
    enqueue = [
        {"model.temperature": 0.2, **bank},
        {"model.temperature": 0.2, **tiny_bank},
        {"model.temperature": 1.0e-40, **bank},
        {"model.temperature": 0.5, **bank},
    ]
    sweep = write_sweep(tmp_path, name, enqueue=enqueue)
    give_store(tmp_path)
    proc = start_cli("sweep", "-c", str(sweep), "--accelerators", "7", cwd=tmp_path)
    try:
        wait_for_running_child(tmp_path, name, 3, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the command, as `kill -9` would: its workers and trials die with it
        proc.wait(timeout=60)
    time.sleep(2)  # the trial process dies with its worker (PR_SET_PDEATHSIG)

    # one more trial, queued by the config: it runs beside the retried one (a tiny bank, so complete or pruned)
    write_sweep(tmp_path, name, enqueue=[*enqueue, {"model.temperature": 0.5, **tiny_bank}])
    again = ["--workers", "2", "--n-trials", "5", "--accelerators", "0,1"]
    done = run_cli("sweep", "-c", str(sweep), *again, cwd=tmp_path, timeout=600)
    assert "trials [3] lost their worker: queued again" in done.stdout
    # a log keeps the workers' lines and no live table (that is for a terminal: tests/sweeps/test_ui.py)
    assert "trial 4 started: " in done.stdout and "time left" not in done.stdout and "\x1b[" not in done.stdout

    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    trials = load_trials(storage, name)
    states = [t.state.name for t in trials]
    # the retry of trial 3 runs to its end or is pruned by the median rule like any trial: both finish it
    assert states[:4] == ["COMPLETE", "PRUNED", "FAIL", "FAIL"], [t.user_attrs for t in trials]
    assert states[4] in ("COMPLETE", "PRUNED"), [t.user_attrs for t in trials]
    assert len(states) == 6 and states[5] in ("COMPLETE", "PRUNED"), [t.user_attrs for t in trials]
    assert "non-finite training loss" in trials[2].user_attrs["fail_reason"]
    assert "died" in trials[3].user_attrs["fail_reason"]
    assert trials[4].params == trials[3].params and trials[4].system_attrs["retry_history"] == [3]

    client, parents, children = child_runs(tmp_path, name)
    assert len(parents) == 1 and sorted(children) == [0, 1, 2, 3, 4, 5]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    expected = {
        0: ("complete", "FINISHED"),
        1: ("pruned", "FINISHED"),
        2: ("failed", "FAILED"),
        3: ("killed", "KILLED"),
        **{n: AS_RUN[states[n]] for n in (4, 5)},
    }
    for number, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert (run.data.tags["sweep.state"], run.info.status) == expected[number], number
    assert "non-finite training loss" in children[2].data.tags["sweep.fail_reason"]
    assert [children[n].data.tags["sweep.devices"] for n in range(4)] == ["7"] * 4
    assert {children[4].data.tags["sweep.devices"], children[5].data.tags["sweep.devices"]} == {"0", "1"}
    for number in (0, 4):
        assert children[number].data.metrics["val/knn_top1"] == trials[number].value
        assert trials[number].user_attrs["mlflow_run_id"] == children[number].info.run_id, (number, done.stdout)
    # Optuna keeps a pruned trial's last reported value as its value
    assert trials[1].value == trials[1].intermediate_values[1] < trials[0].intermediate_values[1]

    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert f"best trial {best.number}: val/knn_top1 = {best.value:.4f}" in done.stdout
    assert parent.data.metrics["best_value"] == best.value and parent.data.tags["best.trial"] == str(best.number)
    assert parent.data.tags["best.model.temperature"] == str(best.params["model.temperature"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "trials.md", "best_config.yaml", "optuna_plots.html", "sweep.yaml"} <= artifacts
    table = Path(client.download_artifacts(parent.info.run_id, "trials.md", str(tmp_path))).read_text()
    assert table.count("\n| ") == 6 and "| 1 | pruned |" in table and "| 3 | killed |" in table
    assert children[3].info.run_id in table  # from MLflow when the trial died before recording it
    best_yaml = Path(client.download_artifacts(parent.info.run_id, "best_config.yaml", str(tmp_path)))
    ready = yaml.safe_load(best_yaml.read_text())
    assert ready["model"]["init_args"]["temperature"] == best.params["model.temperature"]
    assert ready["data"]["init_args"]["max_train_samples"] == best.params["data.max_train_samples"]
    assert ready["trainer"]["max_epochs"] == 30  # the base config's: the sweep's fixed keys are only listed

    from contrastlab.sweeps.space import check_keys

    check_keys(best_yaml, {}, "best_config")  # the CLI's own parser takes it as it is

    # optuna-dashboard, as the printed command starts it, serves the same study
    assert "study dashboard: optuna-dashboard sqlite:///mlruns/optuna.db" in done.stdout
    port = free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), "sqlite:///mlruns/optuna.db", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body, deadline = None, time.time() + 60
        while body is None and time.time() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["tiny"]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
