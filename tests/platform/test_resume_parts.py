"""The pieces of an exact resume, one at a time: RNG states, atomic checkpoint files, finding a requeued job's run."""

import random

import numpy as np
import pytest
import torch

from contrastlab.platform import checkpoints
from contrastlab.platform.resume import AtomicCheckpointIO, rng_state, set_rng_state


def draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    draws()
    torch.save({"rng": rng_state()}, tmp_path / "c.ckpt")
    expected = draws()
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    # Lightning loads checkpoints with weights_only=True: the states must be plain tensors and tuples
    set_rng_state(torch.load(tmp_path / "c.ckpt", weights_only=True)["rng"])
    assert draws() == expected


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "run" / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"global_step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def write_ckpt(folder, run_id, job):
    folder.mkdir(parents=True)
    meta = {"run_id": run_id, "method": "simclr", "experiment": "digits", "slurm_job_id": job}
    torch.save({checkpoints.META_KEY: meta}, folder / "last.ckpt")


def test_a_requeued_slurm_job_finds_its_own_run(tmp_path, monkeypatch):
    write_ckpt(tmp_path / "digits" / "run-a", "run-a", "111")
    write_ckpt(tmp_path / "digits" / "run-b", "run-b", "222")
    monkeypatch.setenv("SLURM_JOB_ID", "111")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert checkpoints.requeued_job_checkpoint(tmp_path, "digits") is None  # first start: a fresh run
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    point = checkpoints.requeued_job_checkpoint(tmp_path, "digits")
    assert point.run_id == "run-a" and point.ckpt_path == tmp_path / "digits" / "run-a" / "last.ckpt"
    monkeypatch.setenv("SLURM_JOB_ID", "333")
    assert checkpoints.requeued_job_checkpoint(tmp_path, "digits") is None
