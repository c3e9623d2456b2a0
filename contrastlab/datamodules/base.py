"""The DataModule contract every modality follows.

A dataset yields dicts `{"x": raw sample, "y": label or -1, "idx": index}`. The train loader shuffles
and drops the last partial batch; validation and test return two loaders: the train split in order
(the kNN feature bank) and the split being evaluated; predict reads the test split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from contrastlab.datamodules.sampling import ResumableSampler
from contrastlab.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataInfo:
    """What a method needs to know about its data, known before any file is read.

    `num_classes` is 0 for unlabelled data; `mean`/`std` (one per channel) normalise views on the device.
    """

    name: str
    modality: str
    channels: int
    num_classes: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class TensorSamples(Dataset):
    """Samples held in memory as one tensor, labels optional (-1 for unlabelled)."""

    def __init__(self, x: Tensor, y: Tensor | None = None):
        if y is not None and len(y) != len(x):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x = x
        self.y = y if y is not None else torch.full((len(x),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        return {"x": self.x[i], "y": int(self.y[i]), "idx": i}


class ContrastiveDataModule(L.LightningDataModule):
    bank_split = "train"  # the split whose features are the kNN bank
    """Loaders for the three splits; subclasses say what the data is (`info`) and how to read a split.

    Args:
        batch_size: per-process training batch; the global batch is this times the world size.
        eval_batch_size: batch for the kNN bank and evaluation passes (defaults to `batch_size`).
        num_workers: loader processes; in-memory datasets are fastest with 0.
        seed: seed of the train/val/test split where the data has no official one.
    """

    def __init__(self, batch_size: int = 256, eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._splits: dict[str, Dataset] = {}
        self._train_sampler: ResumableSampler | None = None
        self._resume_position: tuple[int, int] | None = None  # (epoch, consumed global samples)

    @property
    def info(self) -> DataInfo:
        raise NotImplementedError

    def load_split(self, split: str) -> Dataset:
        """The dataset of one split ("train", "val" or "test")."""
        raise NotImplementedError

    def split(self, name: str) -> Dataset:
        if name not in self._splits:
            self._splits[name] = self.load_split(name)
        return self._splits[name]

    def setup(self, stage: str) -> None:
        if stage == "predict":
            self.split("test")
            return
        self.split("train")
        self.split(self.bank_split)
        self.split("test" if stage == "test" else "val")

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        if train and len(dataset) < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the {len(dataset)} training samples of "
                f"{self.info.name}: lower data.batch_size"
            )
        sampler = self._resumable_sampler(len(dataset)) if train else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            # Its own generator, so starting an epoch does not draw from the global RNG the augmentations use.
            generator=torch.Generator().manual_seed(self.seed) if train else None,
        )

    def _resumable_sampler(self, size: int) -> ResumableSampler:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = ResumableSampler(size, self.batch_size, int(os.environ.get("PL_GLOBAL_SEED", 0)), world, rank)
        if self._resume_position is not None:
            sampler.resume_at(*self._resume_position)
            self._resume_position = None
        self._train_sampler = sampler
        return sampler

    # -- the position in the training order, saved in every checkpoint ------------------------

    def state_dict(self) -> dict[str, Any]:
        trainer, sampler = self.trainer, self._train_sampler
        if trainer is None or sampler is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        epoch = trainer.current_epoch
        if done >= sampler.batches_per_epoch:  # saved at the epoch's end: the next epoch starts afresh
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "consumed": done * sampler.global_batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._resume_position = (state["epoch"], state["consumed"])

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split("train"), train=True)

    def _bank_and(self, split: str) -> list[DataLoader]:
        return [self._loader(self.split(self.bank_split), train=False), self._loader(self.split(split), train=False)]

    def val_dataloader(self) -> list[DataLoader]:
        return self._bank_and("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._bank_and("test")

    def eval_loader(self, split: str) -> DataLoader:
        """One split in a fixed order (no shuffling) in evaluation batches, for offline evaluation."""
        return self._loader(self.split(split), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.split("test"), train=False)
