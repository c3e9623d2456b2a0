"""SIGTERM and SIGUSR1 (SLURM's pre-emption warning) end a training cleanly, with a checkpoint to resume from.

The same holds in `fit`'s final test phase (`test_after_fit`), where Lightning's own handler would only note the
signal and test on: the test stops at its next batch, the run is marked KILLED, and `--resume` finds the
training done and runs the test again.

The signal only sets a flag; at the end of a batch every rank learns whether any rank got one (so a
signal to rank 0 alone is enough; under DDP they compare notes every SYNC_EVERY_N_STEPS steps, a
collective per step would stall them), the run's `last.ckpt` is written with the exact
mid-epoch state, the MLflow run is marked KILLED, and the process exits 0. Under SLURM, SIGUSR1 also
requeues the job, and the requeued job finds this run's checkpoint by its job id and resumes by itself.
"""

from __future__ import annotations

import signal
import subprocess
from types import FrameType

import lightning as L
import torch

from contrastlab import compat
from contrastlab.platform.callbacks import RunCheckpoint, mlflow_logger, sync_due
from contrastlab.platform.checkpoints import slurm_job_id

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint; the command exits 0."""

    def __init__(self, signum: int, checkpoint: str | None, run_id: str | None, requeued: bool):
        name = signal.Signals(signum).name
        where = f"saved {checkpoint}" if checkpoint else "no checkpoint folder"
        how = "the job was requeued and resumes by itself" if requeued else f"continue with --resume {run_id}"
        super().__init__(f"stopped by {name}: {where}; {how}")


def requeue_slurm_job(job_id: str) -> bool:
    try:
        return subprocess.run(["scontrol", "requeue", job_id], check=False).returncode == 0
    except FileNotFoundError:
        return False


class Preemption(L.Callback):
    def __init__(self) -> None:
        self.received: int | None = None
        self._stopping: int | None = None
        self._previous: dict[int, object] = {}
        self._fitted = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def _install_handlers(self) -> None:
        # After Lightning's own handlers are in place: ours replace them until the phase ends.
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install_handlers()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fitted = True  # a test on this trainer from now on is fit's own (test_after_fit)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitted:
            self._install_handlers()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx, *_) -> None:
        # every batch: the ranks test in step, and a test has no checkpoint to write before stopping
        if self._fitted:
            signum = self._agreed_signal(trainer)
            if signum:
                self._stop(trainer, signum)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._stopping is not None or not sync_due(trainer):
            return
        signum = self._agreed_signal(trainer)
        if signum == 0:
            return
        self._stopping = signum
        ckpt = trainer.checkpoint_callback
        # The epoch's last batch is checkpointed after its validation, by RunCheckpoint at the epoch's end.
        if isinstance(ckpt, RunCheckpoint) and not compat.is_last_batch(trainer):
            ckpt.refresh_last_at_batch_end(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        # Stopping here rather than right after the save lets Lightning log the saved step's metrics first.
        if self._stopping is not None:
            self._stop(trainer, self._stopping)

    def _stop(self, trainer: L.Trainer, signum: int) -> None:
        ckpt = trainer.checkpoint_callback
        requeued = False
        job = slurm_job_id()
        if signum == signal.SIGUSR1 and job and trainer.is_global_zero:
            requeued = requeue_slurm_job(job)
        logger = mlflow_logger(trainer)
        if logger is not None:
            logger.preempted = True
        path = ckpt.last_model_path if isinstance(ckpt, RunCheckpoint) else None
        raise Preempted(signum, path, logger.run_id if logger else None, requeued)

    def _agreed_signal(self, trainer: L.Trainer) -> int:
        """The signal any rank received (the largest number if several), the same on every rank."""
        if trainer.world_size == 1:
            return self.received or 0
        mine = torch.tensor(self.received or 0, device=trainer.strategy.root_device)
        return int(trainer.strategy.reduce(mine, reduce_op="max"))
