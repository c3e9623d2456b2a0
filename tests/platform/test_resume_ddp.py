"""Exact resume under 2-process DDP on CPU with real processes, and a checkpoint moving between world sizes."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import Started, run_cli
from tests.platform.interrupted import (
    DDP,
    EPOCHS,
    SHORT,
    STEPS_PER_EPOCH,
    assert_same_training,
    final_state,
    reference_run,
    start,
    the_run,
    wait_for_step,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory, 2)


def test_kill_9_mid_epoch_under_ddp_then_resume_equals_uninterrupted(reference, tmp_path):
    ref = reference
    steps = STEPS_PER_EPOCH * EPOCHS // 2
    # a random step past the first checkpoint, not an epoch's first or last (test_resume.py kills one process at
    # the worst moment, right after a checkpoint)
    per_epoch = STEPS_PER_EPOCH // 2
    candidates = [s for s in range(6, steps - 2) if s % per_epoch and (s + 1) % per_epoch]
    kill_at = random.Random(os.getpid()).choice(candidates)
    proc = start(tmp_path, *SHORT, *DDP)
    wait_for_step(tmp_path, proc, kill_at)
    os.killpg(proc.pid, signal.SIGKILL)  # every rank at once, as a node failure would
    proc.wait()
    client, run = the_run(tmp_path)
    assert run.info.status == "RUNNING"  # nobody could tell MLflow: that is what a kill -9 looks like

    run_cli(*SHORT, *DDP, "--resume", cwd=tmp_path, timeout=600)
    assert_same_training(tmp_path, ref, 2)


def stop_with_sigterm(cwd: Path, proc: Started, step: int) -> int:
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
