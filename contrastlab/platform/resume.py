"""What a checkpoint needs beyond Lightning's own state for a resume to continue exactly as if never stopped.

Lightning saves weights, optimiser, schedule and loop counters. This adds every rank's RNG states
(torch, CUDA, numpy, python: the augmentations draw from them), restored just before the first resumed
batch, and the running sums behind the interrupted epoch's `*_epoch` means (`train/loss_epoch` of an
epoch resumed mid-way is the mean over all its batches, as if never stopped), and it writes checkpoint
files atomically. The position in the epoch's sample order is the
DataModule's state (see `datamodules.sampling`); a change of world size is reconciled here.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from contrastlab import compat
from contrastlab.platform.callbacks import mlflow_logger

log = logging.getLogger("contrastlab")
RNG_KEY = "contrastlab_rng"
EPOCH_SUMS_KEY = "contrastlab_epoch_sums"


def rng_state() -> dict[str, Any]:
    """This process's RNG states in types that `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _all_ranks(obj: Any) -> list[Any]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


class ExactResume(L.Callback):
    """Saves each rank's RNG states in every checkpoint and puts them back when the resumed training starts.

    They are restored at `on_train_start`, after the checkpoint, the data loaders and the model are set
    up (which draw random numbers of their own), so the first resumed batch sees the RNG exactly as
    the interrupted run would have. A checkpoint from another number of processes resumes too: its
    position in the epoch is re-expressed in batches of the new global size and the change is logged.
    """

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] | None = None
        self._pending_sums: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = _all_ranks(rng_state())  # every rank dumps the checkpoint; rank 0 writes it
        if trainer.training and not compat.is_last_batch(trainer):
            checkpoint[EPOCH_SUMS_KEY] = _all_ranks(epoch_sums(trainer))

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(RNG_KEY)
        saved_world = len(self._pending) if self._pending else trainer.world_size
        sums = checkpoint.get(EPOCH_SUMS_KEY)
        if sums and len(sums) == trainer.world_size:
            self._pending_sums = sums[trainer.global_rank]
        elif sums:
            log.warning("world size changed: the interrupted epoch's *_epoch means cover its resumed batches only")
        if saved_world != trainer.world_size:
            self._reposition_epoch(trainer, checkpoint, saved_world)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._pending_sums is not None:
            add_epoch_sums(trainer, self._pending_sums)
            self._pending_sums = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending:
            rank = trainer.global_rank
            set_rng_state(self._pending[rank] if len(self._pending) == trainer.world_size else self._pending[0])
            self._pending = None

    def _reposition_epoch(self, trainer: L.Trainer, checkpoint: dict, saved_world: int) -> None:
        """Express the interrupted epoch's progress in batches of the new global batch size."""
        datamodule = trainer.datamodule
        data_state = checkpoint.get(type(datamodule).__qualname__, {}) if datamodule is not None else {}
        progress = compat.checkpoint_batch_progress(checkpoint)
        global_batch = datamodule.batch_size * trainer.world_size
        done_before = progress["processed"]
        done_now = data_state.get("consumed", 0) // global_batch
        for key in ("ready", "started", "processed", "completed"):
            progress[key] += done_now - done_before
        message = (
            f"resuming {saved_world}-process checkpoint on {trainer.world_size} process(es): global batch "
            f"{datamodule.batch_size * saved_world} -> {global_batch}; epoch {data_state.get('epoch')} continues "
            f"at sample {done_now * global_batch} of its order (batch {done_now}); steps per epoch and the "
            "schedule's length follow the new global batch"
        )
        if trainer.is_global_zero:
            log.warning(message)
            logger = mlflow_logger(trainer)
            if logger is not None:
                logger.experiment.set_tag(logger.run_id, "contrastlab.world_size_change", message)


def epoch_sums(trainer: L.Trainer) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """This rank's running sums of the epoch means so far: {key: (sum of value x batch size, samples)}."""
    return {
        k: (m.value.detach().cpu(), m.cumulated_batch_size.cpu()) for k, m in compat.epoch_mean_metrics(trainer).items()
    }


def add_epoch_sums(trainer: L.Trainer, saved: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Fold the interrupted epoch's saved sums into the first resumed batch's.

    Lightning sums `0 + x1`, then `+ x2` ...; the uninterrupted run had `S + x1` at this batch, and
    `saved + (0 + x1)` is that same float, so every later sum, and the epoch mean, are bit for bit equal.
    """
    for key, metric in compat.epoch_mean_metrics(trainer).items():
        if key in saved:
            total, count = saved[key]
            metric.value = total.to(metric.value) + metric.value
            metric.cumulated_batch_size = count.to(metric.cumulated_batch_size) + metric.cumulated_batch_size


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file, syncs it and renames it over the target; reads weights only.

    A process killed while writing leaves the previous `last.ckpt` intact (and at most a stray
    `.tmp` file, which the next save replaces), never a truncated one. Whatever Lightning asks for,
    a checkpoint is read with `weights_only=True`: a file is data, never code to run.
    """

    def load_checkpoint(self, path, map_location: Any | None = "cpu", weights_only: bool | None = None) -> dict:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
