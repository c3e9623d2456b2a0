"""What the exact-resume tests share: a short digits run, its real processes, and the comparison with an
uninterrupted run of the same seed (tests/platform/test_resume.py on one process, test_resume_ddp.py on two)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import lightning as L
import torch

from tests.conftest import DIGITS_CONFIG, Started, run_cli, start_cli, store_client

# 384 samples in batches of 32: 12 steps an epoch, 3 epochs, last.ckpt refreshed every 5 steps.
STEPS_PER_EPOCH, EPOCHS = 12, 3


def short(config: Path = DIGITS_CONFIG, *extra: str) -> list[str]:
    """The short run of a digits `config`: 384 samples in batches of 32, 3 epochs, checkpoints every 5 steps."""
    return [
        *("fit", "-c", str(config), "--trainer.max_epochs", str(EPOCHS), "--trainer.check_val_every_n_epoch", "1"),
        *("--trainer.log_every_n_steps", "1", "--data.init_args.batch_size", "32"),
        *("--data.init_args.max_train_samples", "384", "--model.init_args.proj_hidden_dim", "64"),
        *("--tracking.system_metrics_interval", "0", "--tracking.checkpoint_every_n_steps", "5"),
        *("--test_after_fit", "false", *extra),
    ]


SHORT = short()
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
        got, want = history(client_a, run_a.info.run_id, key), history(client_b, run_b.info.run_id, key)
        assert got == want, (
            key,
            "only resumed:",
            sorted(set(got) - set(want)),
            "only uninterrupted:",
            sorted(set(want) - set(got)),
        )


class KillAfterCheckpoint(L.Callback):
    """Kills its own process (SIGKILL) right after last.ckpt is written at `step`, before Lightning logs that step's
    metrics: the moment where a kill would lose most. Given on the command line, from a test."""

    def __init__(self, step: int) -> None:
        self.step = step

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        checkpoint = trainer.checkpoint_callback
        save = checkpoint.refresh_last

        def save_then_die(trainer: L.Trainer) -> None:
            save(trainer)
            if trainer.global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoint.refresh_last = save_then_die


class SignalDuringTest(L.Callback):
    """Sends SIGTERM to its own process as fit's final test starts its first batch, as a scheduler would mid-test."""

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx, *_) -> None:
        if batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Started:
    """The run in the background, in a process group of its own: a kill reaches every DDP rank, as on a real node."""
    return start_cli(*args, cwd=cwd, env=env, new_session=True)


def wait_for_step(cwd: Path, proc: Started, step: int, timeout: float = 240) -> None:
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


def reference_run(tmp_path_factory, processes: int, args: list[str] = SHORT) -> Path:
    """The folder of an uninterrupted run of `args` with the same seed on that many processes: what every
    interrupted run must end up as."""
    cwd = tmp_path_factory.mktemp(f"reference-{processes}")
    run_cli(*args, *(DDP if processes == 2 else []), cwd=cwd, timeout=600)
    return cwd
