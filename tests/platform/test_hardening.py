"""Bad input and hostile files, as a user or an attacker would bring them: one line, no code run, no secret
logged, no run's data lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import (
    DIGITS_CONFIG,
    REPO,
    free_port,
    give_store,
    in_process_store,
    run_cli,
    start_cli,
    store_client,
    the_error_line,
)
from tests.eval.test_eval import contrastlab_here

MSC_CONFIG = REPO / "configs" / "msc" / "digits.yaml"
TINY = [
    "--trainer.max_epochs",
    "1",
    "--data.init_args.max_train_samples",
    "256",
    "--data.init_args.batch_size",
    "64",
    "--model.init_args.proj_hidden_dim",
    "64",
    "--tracking.system_metrics_interval",
    "0",
    "--test_after_fit",
    "false",
]
RUN_ID = "0123456789abcdef0123456789abcdef"


class RunsCode:
    """Unpickling this writes `marker`: what a crafted checkpoint would do with a shell instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A file shaped like one of our checkpoints whose unpickling runs code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"run_id": RUN_ID, "method": "simclr", "experiment": "digits"}
    torch.save({"contrastlab": meta, "state_dict": {}, "payload": RunsCode(marker)}, path)
    return path


def runs_of(cwd: Path, experiment: str = "digits") -> list:
    if not (cwd / "mlruns" / "mlflow.db").exists():
        return []
    client = store_client(cwd)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny SimCLR run and one tiny BYOL run (other method) on digits, each with its last.ckpt."""
    # in this process (what the tests below refuse is the point, not the runs' interpreters)
    cwd = give_store(tmp_path_factory.mktemp("trained"))
    assert contrastlab_here(cwd, "fit", "-c", str(DIGITS_CONFIG), *TINY, *in_process_store(cwd)) == 0
    (simclr,) = (cwd / "checkpoints").rglob("last.ckpt")
    other = give_store(tmp_path_factory.mktemp("byol"))
    byol_config = REPO / "configs" / "byol" / "digits.yaml"
    assert contrastlab_here(other, "fit", "-c", str(byol_config), *TINY[:-6], *in_process_store(other)) == 0
    (byol,) = (other / "checkpoints").rglob("last.ckpt")
    return cwd, simclr, byol


# -- 1. a checkpoint is data, never code --------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["resume-path", "resume-run-id", "resume-scan", "fit-ckpt-path", "test", "validate", "predict", "msc-init-from"],
)
def test_a_crafted_checkpoint_runs_no_code_on_any_path(tmp_path, where, cli_here):
    marker = tmp_path / "marker"
    run_folder = tmp_path / "checkpoints" / "digits" / RUN_ID
    evil = str(crafted_checkpoint(run_folder / "last.ckpt", marker))
    config = ["-c", str(DIGITS_CONFIG)]
    argv = {
        "resume-path": ["fit", *config, "--resume", evil],
        "resume-run-id": ["fit", *config, "--resume", RUN_ID],
        "resume-scan": ["fit", *config, "--resume"],
        "fit-ckpt-path": ["fit", *config, "--ckpt_path", evil],
        "test": ["test", *config, "--ckpt_path", evil],
        "validate": ["validate", *config, "--ckpt_path", evil],
        "predict": ["predict", *config, "--ckpt_path", evil],
        "msc-init-from": ["fit", "-c", str(MSC_CONFIG), "--model.init_args.init_from", evil],
    }[where]
    line = the_error_line(*cli_here(*argv, cwd=tmp_path))
    assert not marker.exists(), "unpickling the checkpoint ran its code"
    assert "last.ckpt" in line and ("weights" in line or "readable" in line), line
    assert runs_of(tmp_path) == []


def test_a_sweep_whose_base_resumes_a_crafted_checkpoint_runs_no_code(tmp_path, cli_here):
    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    base = yaml.safe_load(DIGITS_CONFIG.read_text()) | {"resume": str(evil)}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {
        "name": "evil",
        "base": str(tmp_path / "base.yaml"),
        "fixed": {"trainer.max_epochs": 1, "tracking.system_metrics_interval": 0},
        "space": {"model.temperature": {"type": "float", "low": 0.1, "high": 0.5}},
        "objective": {"metric": "val/knn_top1", "direction": "maximize"},
        "n_trials": 1,
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    line = the_error_line(*cli_here("sweep", "-c", str(tmp_path / "sweep.yaml"), cwd=tmp_path))
    assert not marker.exists()
    # refused as it is read, before a worker starts or the checkpoint is opened (every trial would resume one run)
    assert f"base {tmp_path / 'base.yaml'} resumes {evil}: each trial starts a run of its own" in line, line


# -- 2. many processes on a new store ------------------------------------------------------------------------


@pytest.mark.slow
def test_four_fits_started_together_on_a_new_store_all_finish(tmp_path):
    quick = [*TINY, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0"]
    procs = [start_cli("fit", "-c", str(DIGITS_CONFIG), *quick, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
             for _ in range(4)]  # fmt: skip
    outputs = ["".join(p.communicate(timeout=600)) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(o[-2000:] for o in outputs)
    assert not any("Traceback" in o for o in outputs)
    assert sorted(r.info.status for r in runs_of(tmp_path)) == ["FINISHED"] * 4


def test_a_fit_whose_experiment_another_fit_creates_first_joins_it(tmp_path, monkeypatch):
    # the race above, made certain: the experiment appears between Lightning's lookup and its create
    import mlflow

    from contrastlab.platform.tracking import RunLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    theirs = mlflow.MlflowClient(uri).create_experiment("digits")
    lookup = mlflow.MlflowClient.get_experiment_by_name
    missed = []

    def too_early(client, name):  # the first lookup runs before the other fit's create lands
        if not missed:
            missed.append(name)
            return None
        return lookup(client, name)

    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name", too_early)
    logger = RunLogger(experiment_name="digits", tracking_uri=uri)
    assert logger.experiment_id == theirs and missed == ["digits"]
    assert mlflow.MlflowClient(uri).get_run(logger.run_id).info.experiment_id == theirs


# -- 3. --ckpt_path is --resume --------------------------------------------------------------------------------


def test_ckpt_path_refuses_a_changed_hyper_parameter_like_resume(trained, cli_here):
    cwd, simclr, _ = trained
    args = ["fit", "-c", str(DIGITS_CONFIG), *TINY, "--ckpt_path", str(simclr), "--model.temperature", "0.5"]
    line = the_error_line(*cli_here(*args, cwd=cwd))
    assert "model.temperature: 0.2 -> 0.5" in line


def test_ckpt_path_refuses_another_methods_checkpoint(trained, cli_here):
    cwd, _, byol = trained
    line = the_error_line(*cli_here("fit", "-c", str(DIGITS_CONFIG), *TINY, "--ckpt_path", str(byol), cwd=cwd))
    assert "written by byol" in line and "trains simclr" in line


def test_ckpt_path_to_a_file_that_is_no_checkpoint_is_one_line(tmp_path, cli_here):
    junk = tmp_path / "notes.ckpt"
    junk.write_text("not a checkpoint")
    for verb in ("fit", "test"):
        line = the_error_line(*cli_here(verb, "-c", str(DIGITS_CONFIG), "--ckpt_path", str(junk), cwd=tmp_path))
        assert "notes.ckpt" in line and "not a readable checkpoint" in line


# -- 4. secrets --------------------------------------------------------------------------------------------------


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--default-artifact-root", str(store / "art"),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    import urllib.request

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield port
    os.killpg(proc.pid, 9)
    proc.wait()


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_never_logged_or_printed(tmp_path, mlflow_server):
    secret = "Sup3rSecretPw"
    uri = f"http://alice:{secret}@127.0.0.1:{mlflow_server}"
    args = [*TINY, "--trainer.max_steps", "2", "--tracking.log_checkpoints", "false"]
    by_option = run_cli("fit", "-c", str(DIGITS_CONFIG), *args, "--tracking-uri", uri, cwd=tmp_path)
    by_env = start_cli("fit", "-c", str(DIGITS_CONFIG), *args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    out, err = by_env.communicate(timeout=300)
    assert by_env.returncode == 0, err[-3000:]
    assert secret not in by_option.stdout + by_option.stderr and secret not in out + err
    import mlflow

    client = mlflow.MlflowClient(f"http://127.0.0.1:{mlflow_server}")
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        logged = " ".join([*run.data.params.values(), *run.data.tags.values()])
        config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / run.info.run_id)))
        assert secret not in logged and secret not in config.read_text()
    assert "http://alice:***@127.0.0.1" in " ".join(r.data.params.get("tracking.uri", "") for r in runs)


# -- 5. broken stores are one line, at once ----------------------------------------------------------------------


def test_an_unreachable_tracking_server_is_one_line_at_once(tmp_path, cli_here):
    started = time.monotonic()
    line = the_error_line(
        *cli_here("fit", "-c", str(DIGITS_CONFIG), "--tracking-uri", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    )
    assert "tracking.uri=http://127.0.0.1" in line and "does not answer" in line
    assert time.monotonic() - started < 60


def test_an_unwritable_store_is_one_line(tmp_path, cli_here):
    line = the_error_line(
        *cli_here("fit", "-c", str(DIGITS_CONFIG), "--tracking-uri", "sqlite:////proc/mlruns/mlflow.db", cwd=tmp_path)
    )
    assert "tracking.uri" in line and "/proc/mlruns" in line


def test_a_read_only_mlruns_is_one_line_and_keeps_its_runs(trained, tmp_path, cli_here):
    """mlruns made immutable (chattr +i), which binds root too, as file modes would bind a user."""
    cwd, _, _ = trained
    subprocess.run(["cp", "-r", str(cwd / "mlruns"), str(tmp_path)], check=True)
    before = sorted(r.info.run_id for r in runs_of(tmp_path))
    store = tmp_path / "mlruns"
    if subprocess.run(["chattr", "+i", str(store)], capture_output=True).returncode != 0:
        pytest.skip("this file system cannot make a folder read-only for root (chattr +i)")
    try:
        line = the_error_line(*cli_here("fit", "-c", str(DIGITS_CONFIG), *TINY, cwd=tmp_path))
    finally:
        subprocess.run(["chattr", "-i", str(store)], check=True)
    assert "mlruns" in line and "read-only" in line, line
    assert sorted(r.info.run_id for r in runs_of(tmp_path)) == before


# -- 6. divergence -------------------------------------------------------------------------------------------------


def test_a_diverged_fit_fails_its_run_keeps_the_finite_checkpoint_and_says_so(tmp_path, cli_here):
    args = [*TINY, "--trainer.max_epochs", "3", "--model.init_args.optimizer.lr", "1e6"]
    line = the_error_line(*cli_here("fit", "-c", str(DIGITS_CONFIG), *args, cwd=tmp_path))
    assert "training diverged: non-finite" in line and "lower model.optimizer.lr" in line
    (run,) = runs_of(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["contrastlab.fail_reason"].startswith("non-finite")
    last = torch.load(tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt", weights_only=True)
    weights = [v for v in last["state_dict"].values() if v.is_floating_point()]
    assert all(bool(torch.isfinite(v).all()) for v in weights), "last.ckpt holds NaN weights"
    step = int(run.data.tags["contrastlab.fail_reason"].rsplit("step ", 1)[1])
    assert last["global_step"] < step


# -- 9. smaller ------------------------------------------------------------------------------------------------------


def test_a_mistake_found_while_setting_up_leaves_no_run_behind(tmp_path, cli_here):
    line = the_error_line(
        *cli_here("fit", "-c", str(DIGITS_CONFIG), "--data.init_args.batch_size", "5000", cwd=tmp_path)
    )
    assert "data.batch_size=5000" in line
    assert runs_of(tmp_path) == []


def test_a_resume_that_stops_on_a_mistake_leaves_the_run_as_it_was(trained, cli_here):
    cwd, simclr, _ = trained
    run_id = simclr.parent.name
    the_error_line(*cli_here("fit", "-c", str(DIGITS_CONFIG), *TINY, "--resume", run_id, "--data.init_args.batch_size",
                             "5000", "--resume_allow_changes", "true", cwd=cwd))  # fmt: skip
    assert store_client(cwd).get_run(run_id).info.status == "FINISHED"


def test_redaction_of_uris_in_text():
    from contrastlab.platform.stores import redact, redact_text

    assert redact("http://alice:pw@host:5000/x") == "http://alice:***@host:5000/x"
    assert redact("postgresql://u:p%40ss@db/optuna?sslmode=require") == "postgresql://u:***@db/optuna?sslmode=require"
    assert redact("https://h/api?token=abc&x=1") == "https://h/api?token=***&x=1"
    assert redact("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"
    text = "uri: http://a:b@c:5000 and s3://k:s@bucket/p"
    assert redact_text(text) == "uri: http://a:***@c:5000 and s3://k:***@bucket/p"


# -- 8. no device sync per step ------------------------------------------------------------------------------------


class CountingStrategy:
    """A two-rank DDP strategy that counts the collectives asked of it."""

    root_device = torch.device("cpu")

    def __init__(self):
        self.collectives = 0

    def reduce(self, tensor, reduce_op="mean"):
        self.collectives += 1
        return tensor


def two_rank_trainer(strategy: CountingStrategy, step: int):
    from types import SimpleNamespace

    progress = SimpleNamespace(is_last_batch=False)
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(world_size=2, strategy=strategy, global_step=step, fit_loop=loop, current_epoch=0)


def test_signal_and_divergence_checks_sync_every_n_steps_not_every_step():
    from contrastlab.platform.callbacks import SYNC_EVERY_N_STEPS, DivergenceGuard
    from contrastlab.platform.preemption import Preemption

    strategy = CountingStrategy()
    preemption, guard = Preemption(), DivergenceGuard()
    steps = 4 * SYNC_EVERY_N_STEPS
    for step in range(1, steps + 1):
        trainer = two_rank_trainer(strategy, step)
        preemption.on_train_batch_end(trainer, None, None, None, step)
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.0)}, None, step)
    assert strategy.collectives == 2 * steps // SYNC_EVERY_N_STEPS
