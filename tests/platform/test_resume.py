"""Exact resume with real processes: kill -9 mid-epoch or SIGTERM, resume, and get the uninterrupted run back."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import DIGITS_CONFIG, run_cli, store_client

# 384 samples in batches of 32: 12 steps an epoch, 3 epochs, last.ckpt refreshed every 5 steps.
STEPS_PER_EPOCH, EPOCHS = 12, 3
SHORT = [
    "fit",
    "-c",
    str(DIGITS_CONFIG),
    "--trainer.max_epochs",
    str(EPOCHS),
    "--trainer.check_val_every_n_epoch",
    "1",
    "--trainer.log_every_n_steps",
    "1",
    "--data.init_args.batch_size",
    "32",
    "--data.init_args.max_train_samples",
    "384",
    "--model.init_args.proj_hidden_dim",
    "64",
    "--tracking.system_metrics_interval",
    "0",
    "--tracking.checkpoint_every_n_steps",
    "5",
    "--test_after_fit",
    "false",
]
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
# the epoch means too: the interrupted epoch's must average all its batches, not only the resumed ones
HISTORIES = ("train/loss_step", "train/lr", "val/knn_top1", "epoch", "train/loss_epoch", "train/probe_loss_epoch")


def the_run(cwd: Path):
    client = store_client(cwd)
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert len(runs) == 1, "a resume must continue the run, not start another"
    return client, runs[0]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def final_state(cwd: Path) -> dict:
    _, run = the_run(cwd)
    return torch.load(cwd / "checkpoints" / "digits" / run.info.run_id / "last.ckpt", weights_only=False)


def assert_same_training(resumed: Path, reference: Path, processes: int) -> None:
    """Same final weights and optimiser state, and the same metric history, step for step."""
    got, want = final_state(resumed), final_state(reference)
    assert got["global_step"] == want["global_step"] == STEPS_PER_EPOCH * EPOCHS // processes
    for name, tensor in want["state_dict"].items():
        assert torch.equal(got["state_dict"][name], tensor), f"{name} differs after the resume"
    got_state, want_state = got["optimizer_states"][0]["state"], want["optimizer_states"][0]["state"]
    assert got_state.keys() == want_state.keys()
    for a, b in zip(got_state.values(), want_state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in b)
    client_a, run_a = the_run(resumed)
    client_b, run_b = the_run(reference)
    assert run_a.info.status == "FINISHED"
    for key in HISTORIES:
        assert history(client_a, run_a.info.run_id, key) == history(client_b, run_b.info.run_id, key), key


def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | (env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "contrastlab", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches every DDP rank, as on a real node
    )


def wait_for_step(cwd: Path, proc: subprocess.Popen, step: int, timeout: float = 240) -> None:
    """Until the run has logged `step` (read from its MLflow store, as a watching user would)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before step {step}: {proc.communicate()[1][-3000:]}"
        # Read the store only once the run has created it: two processes creating one SQLite store race.
        if not any((cwd / "checkpoints").glob("digits/*/*.ckpt")):
            time.sleep(0.05)
            continue
        try:
            client, run = the_run(cwd)
            logged = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_step")]
            if logged and max(logged) >= step:
                return
        except Exception:  # the store or the run may not exist yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """reference(processes): the folder of an uninterrupted run with the same seed on that many processes, what
    every interrupted run must end up as; each is trained once per module, when a test first asks for it."""
    runs: dict[int, Path] = {}

    def folder(processes: int) -> Path:
        if processes not in runs:
            cwd = tmp_path_factory.mktemp(f"reference-{processes}")
            run_cli(*SHORT, *(DDP if processes == 2 else []), cwd=cwd, timeout=600)
            runs[processes] = cwd
        return runs[processes]

    return folder


@pytest.mark.parametrize("processes", [1, 2], ids=["1-process", "2-processes"])
def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(processes, reference, tmp_path):
    ref = reference(processes)
    extra = DDP if processes == 2 else []
    steps = STEPS_PER_EPOCH * EPOCHS // processes
    # a random step past the first checkpoint, not on an epoch boundary or a checkpoint step
    candidates = [s for s in range(6, steps - 2) if s % (STEPS_PER_EPOCH // processes) and s % 5]
    kill_at = random.Random(os.getpid()).choice(candidates)
    proc = start(tmp_path, *SHORT, *extra)
    wait_for_step(tmp_path, proc, kill_at)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    client, run = the_run(tmp_path)
    assert run.info.status == "RUNNING"  # nobody could tell MLflow: that is what a kill -9 looks like

    run_cli(*SHORT, *extra, "--resume", cwd=tmp_path, timeout=600)
    assert_same_training(tmp_path, ref, processes)


def test_sigterm_saves_exits_0_and_resumes_exactly(reference, tmp_path):
    """One process: the signal path is the same under DDP, which the kill test covers."""
    ref = reference(1)
    proc = start(tmp_path, *SHORT)
    wait_for_step(tmp_path, proc, 14)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped by SIGTERM: saved" in err and "--resume" in err and "Traceback" not in err
    client, run = the_run(tmp_path)
    assert run.info.status == "KILLED"
    saved = torch.load(tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt", weights_only=False)
    assert 14 <= saved["global_step"] < STEPS_PER_EPOCH * EPOCHS and saved["global_step"] % STEPS_PER_EPOCH

    run_cli(*SHORT, "--resume", run.info.run_id, cwd=tmp_path, timeout=600)
    assert_same_training(tmp_path, ref, 1)


def test_sigusr1_under_slurm_requeues_and_the_requeued_job_resumes_by_itself(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # stands in for SLURM's: records what it was asked
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    slurm = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    proc = start(tmp_path, *SHORT, env=slurm)
    wait_for_step(tmp_path, proc, 8)
    os.kill(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "stopped by SIGUSR1" in err and "requeued" in err, err[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]

    # SLURM starts the same command again, with SLURM_RESTART_COUNT set: no --resume needed
    again = start(tmp_path, *SHORT, env=slurm | {"SLURM_RESTART_COUNT": "1"})
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert "SLURM job requeued: resuming run" in err
    _, run = the_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert final_state(tmp_path)["global_step"] == STEPS_PER_EPOCH * EPOCHS


def stop_with_sigterm(cwd: Path, proc: subprocess.Popen, step: int) -> int:
    """SIGTERM to the launching process (rank 0) once `step` is logged; the global step it saved."""
    wait_for_step(cwd, proc, step)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0 and "stopped by SIGTERM" in err, err[-3000:]
    _, run = the_run(cwd)
    return torch.load(cwd / "checkpoints" / "digits" / run.info.run_id / "last.ckpt", weights_only=False)["global_step"]


@pytest.mark.slow
def test_a_checkpoint_moves_between_world_sizes(tmp_path):
    first_stop = stop_with_sigterm(tmp_path, start(tmp_path, *SHORT, *DDP), 4)  # 2 processes: 6 steps an epoch
    second_stop = stop_with_sigterm(tmp_path, start(tmp_path, *SHORT, "--resume"), first_stop + 5)  # 1 process
    assert second_stop > first_stop
    client, run = the_run(tmp_path)
    assert (
        "resuming 2-process checkpoint on 1 process(es): global batch 64 -> 32"
        in run.data.tags["contrastlab.world_size_change"]
    )
    run_cli(*SHORT, *DDP, "--resume", cwd=tmp_path, timeout=600)
    client, run = the_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert "resuming 1-process checkpoint on 2 process(es)" in run.data.tags["contrastlab.world_size_change"]
    logged = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_step")]
    assert logged == sorted(set(logged)) and max(logged) == final_state(tmp_path)["global_step"] - 1
    assert sorted({int(m.value) for m in client.get_metric_history(run.info.run_id, "epoch")}) == [0, 1, 2]
