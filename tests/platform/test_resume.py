"""Exact resume on one process, with real processes: kill -9 mid-epoch or SIGTERM, then resume, and get the
uninterrupted run back; SLURM's SIGUSR1 requeues the job, which resumes by itself.

The exact-resume runs here are SwAV's with multi-crop (2 global + 4 local crops a step, more random draws than
any other recipe) and a queue that fills mid-epoch: the state a resume must restore beyond SimCLR's, which
test_resume_ddp.py resumes under DDP."""

from __future__ import annotations

import os
import random
import signal

import pytest
import torch

from tests.conftest import REPO, run_cli
from tests.platform.interrupted import (
    EPOCHS,
    SHORT,
    STEPS_PER_EPOCH,
    assert_same_training,
    final_state,
    reference_run,
    short,
    start,
    the_run,
    wait_for_step,
)

# half-width small_cnn: six views a step then cost about what SimCLR's two full-width views did, and what a resume
# must restore does not depend on the width
MULTI_CROP = short(
    REPO / "configs" / "swav" / "digits.yaml",
    *("--model.init_args.queue_size", "64", "--model.init_args.backbone_kwargs", "{widths: [32, 64, 128]}"),
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory, 1, MULTI_CROP)


def test_kill_9_right_after_a_mid_epoch_checkpoint_then_resume_equals_uninterrupted(reference, tmp_path):
    # The worst moment for a kill: last.ckpt was just written at the end of a batch, and Lightning has not yet
    # logged that batch's step metrics (it does so after the batch-end hooks); the resumed run does not train that
    # batch again, so its values must already be in the run. A random one of the mid-epoch checkpoint steps.
    steps = STEPS_PER_EPOCH * EPOCHS
    candidates = [s for s in range(5, steps, 5) if s % STEPS_PER_EPOCH]
    kill_at = random.Random(os.getpid()).choice(candidates)
    killer = f"{{class_path: tests.platform.interrupted.KillAfterCheckpoint, init_args: {{step: {kill_at}}}}}"
    proc = start(tmp_path, *MULTI_CROP, "--trainer.callbacks+", killer)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    _, run = the_run(tmp_path)
    assert run.info.status == "RUNNING"  # nobody could tell MLflow: that is what a kill -9 looks like

    resumed = run_cli(*MULTI_CROP, "--resume", cwd=tmp_path, timeout=600)
    # what Lightning warns about is ours to know: the loader resumes through the DataModule, the folder is the run's
    assert "not resumable" not in resumed.stderr and "exists and is not empty" not in resumed.stderr
    assert_same_training(tmp_path, reference, 1)


def test_sigterm_saves_exits_0_and_resumes_exactly(reference, tmp_path):
    """One process: the signal path is the same under DDP, whose kill test is in test_resume_ddp.py."""
    proc = start(tmp_path, *MULTI_CROP)
    wait_for_step(tmp_path, proc, 14)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped by SIGTERM: saved" in err and "--resume" in err and "Traceback" not in err
    _, run = the_run(tmp_path)
    assert run.info.status == "KILLED"
    saved = torch.load(tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt", weights_only=False)
    assert 14 <= saved["global_step"] < STEPS_PER_EPOCH * EPOCHS and saved["global_step"] % STEPS_PER_EPOCH

    run_cli(*MULTI_CROP, "--resume", run.info.run_id, cwd=tmp_path, timeout=600)
    assert_same_training(tmp_path, reference, 1)


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


def test_sigterm_in_the_final_test_stops_and_an_end_of_epoch_resume_logs_every_step(tmp_path):
    """SIGTERM during fit's test phase ends the command at the next test batch, the run KILLED and resumable; the
    resume (from the end-of-epoch checkpoint) trains on with no gap in the logged steps, then tests."""
    one_epoch = [*SHORT, "--trainer.max_epochs", "1", "--test_after_fit", "true"]
    signal_in_test = "tests.platform.interrupted.SignalDuringTest"
    proc = start(tmp_path, *one_epoch, "--trainer.callbacks+", signal_in_test)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "stopped by SIGTERM: saved" in err and "Traceback" not in err, err[-3000:]
    client, run = the_run(tmp_path)
    assert run.info.status == "KILLED" and not [k for k in run.data.metrics if k.startswith("test/")]
    assert final_state(tmp_path)["global_step"] == STEPS_PER_EPOCH

    run_cli(*one_epoch, "--trainer.max_epochs", "2", "--resume", run.info.run_id, cwd=tmp_path, timeout=600)
    client, run = the_run(tmp_path)
    assert run.info.status == "FINISHED" and "test/knn_top1" in run.data.metrics
    logged = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_step")]
    assert sorted(logged) == list(range(2 * STEPS_PER_EPOCH))
