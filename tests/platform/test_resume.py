"""Exact resume on one process, with real processes: kill -9, SLURM's SIGUSR1 and SIGTERM in one run, which
must end as the uninterrupted run did."""

from __future__ import annotations

import os
import random
import signal

import pytest
import torch

from tests.conftest import run_cli
from tests.platform.interrupted import (
    EPOCHS,
    SHORT,
    STEPS_PER_EPOCH,
    assert_same_training,
    reference_run,
    start,
    the_run,
    wait_for_step,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory, 1)


def test_kill_9_then_a_slurm_requeue_then_sigterm_and_the_run_still_equals_the_uninterrupted_one(reference, tmp_path):
    """Each way a run is interrupted, one after another in one run on one process: kill -9 mid-epoch, then
    `--resume`; SLURM's SIGUSR1, which requeues the job, whose next start resumes by itself; SIGTERM, which saves
    and exits 0, then `--resume RUN_ID`. The run ends as the uninterrupted one did, weight for weight and step
    for step (one process: the signal path is the same under DDP, whose kill -9 the test above covers)."""
    ref = reference
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # stands in for SLURM's: records what it was asked
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    slurm = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}

    # 1. kill -9 at a random step of the first epoch past the first checkpoint (step 5), not on a checkpoint step
    kill_at = random.Random(os.getpid()).choice([6, 7, 8, 9, 11])
    proc = start(tmp_path, *SHORT, env=slurm)
    wait_for_step(tmp_path, proc, kill_at)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _, run = the_run(tmp_path)
    assert run.info.status == "RUNNING"  # nobody could tell MLflow: that is what a kill -9 looks like

    # 2. --resume, then SIGUSR1 under SLURM: saved, requeued, exit 0
    proc = start(tmp_path, *SHORT, "--resume", env=slurm)
    wait_for_step(tmp_path, proc, 16)
    os.kill(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "stopped by SIGUSR1" in err and "requeued" in err, err[-3000:]
    # what Lightning warns about is ours to know: the loader resumes through the DataModule, the folder is the run's
    assert "not resumable" not in err and "exists and is not empty" not in err, err[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]

    # 3. SLURM starts the same command again, with SLURM_RESTART_COUNT set: it resumes with no --resume; SIGTERM
    proc = start(tmp_path, *SHORT, env=slurm | {"SLURM_RESTART_COUNT": "1"})
    wait_for_step(tmp_path, proc, 26)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "SLURM job requeued: resuming run" in err
    assert "stopped by SIGTERM: saved" in err and "--resume" in err and "Traceback" not in err
    _, run = the_run(tmp_path)
    assert run.info.status == "KILLED"
    saved = torch.load(tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt", weights_only=False)
    assert 26 <= saved["global_step"] < STEPS_PER_EPOCH * EPOCHS and saved["global_step"] % STEPS_PER_EPOCH

    # 4. --resume RUN_ID to the end
    run_cli(*SHORT, "--resume", run.info.run_id, cwd=tmp_path, timeout=600)
    assert_same_training(tmp_path, ref, 1)
