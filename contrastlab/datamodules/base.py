"""The DataModule contract every modality follows.

A dataset yields dicts `{SAMPLE: raw sample, LABEL: label or -1, INDEX: index}` (the batch keys of
contrastlab/contract.py, "x", "y" and "idx"; multi-label data: a multi-hot label, all -1 when unlabelled). The
DataModule says what one sample is (`info`, a `DataInfo`), proposes the
data's default view pipeline (`default_views`) and batches samples with its `collate` hook (`pad_collate`
pads variable-length samples and adds `mask` and `lengths`). The train loader follows a resumable
permutation and drops the last partial batch; validation and test return named loaders, `bank` (the
train split in order: the kNN feature bank) and `query` (the split being evaluated); predict reads the
test split; `eval_loader(split)` is any split in order; `hand_features()` names the features a practitioner would
compute from the raw samples (the baselines of evaluation: the samples themselves by default). `normal_class` trains
one-class: train and the bank keep only that class.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from contrastlab import compat
from contrastlab.contract import (
    BANK_LOADER,
    INDEX,
    LABEL,
    LENGTHS,
    MASK,
    QUERY_LOADER,
    SAMPLE,
    DataInfo,
    HandFeatures,
    ViewPipeline,
    as_they_are,
    default_views,
)
from contrastlab.datamodules.sampling import ResumableSampler
from contrastlab.errors import ConfigError

SPLITS = ("train", "val", "test")


class TensorSamples(Dataset):
    """Samples held in memory as one tensor, labels optional (-1 for unlabelled); (N, C) labels are multi-hot."""

    def __init__(self, x: Tensor, y: Tensor | None = None):
        if y is not None and len(y) != len(x):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x = x
        self.y = y if y is not None else torch.full((len(x),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        y = self.y[i]
        return {SAMPLE: self.x[i], LABEL: int(y) if y.ndim == 0 else y, INDEX: i}


def pad_collate(samples: list[dict[str, Any]], key: str = SAMPLE, pad_value: float = 0.0) -> dict[str, Any]:
    """Batch samples whose `key` differs in its last dimension (time): pad to the longest, and add
    `mask` (B, T) True on real steps and `lengths` (B,). Every other key is batched as usual."""
    lengths = torch.tensor([sample[key].shape[-1] for sample in samples])
    longest = int(lengths.max())
    padded = torch.stack(
        [
            torch.nn.functional.pad(sample[key], (0, longest - sample[key].shape[-1]), value=pad_value)
            for sample in samples
        ]
    )
    batch = default_collate([{k: v for k, v in sample.items() if k != key} for sample in samples])
    batch[key] = padded
    batch[LENGTHS] = lengths
    batch[MASK] = torch.arange(longest)[None, :] < lengths[:, None]
    return batch


class ContrastiveDataModule(L.LightningDataModule):
    """Loaders for the splits; subclasses say what the data is (`info`) and how to read a split.

    Args:
        batch_size: per-process training batch; the global batch is this times the world size.
        eval_batch_size: batch for the kNN bank and evaluation passes (defaults to `batch_size`).
        num_workers: loader processes; in-memory datasets are fastest with 0.
        seed: seed of the train/val/test split where the data has no official one.
        normal_class: one-class (one-vs-rest) training: train, and the kNN bank, hold only this class;
            validation and test keep every class (anomaly detection).
    """

    bank_split = "train"  # the split whose features are the kNN bank

    def __init__(
        self,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        normal_class: int | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.normal_class = normal_class
        self._splits: dict[str, Dataset] = {}
        self._train_sampler: ResumableSampler | None = None
        self._resume_position: tuple[int, int] | None = None  # (epoch, consumed global samples)

    @property
    def info(self) -> DataInfo:
        raise NotImplementedError

    def default_views(self) -> ViewPipeline:
        """The view pipeline this data proposes (a config's `model.init_args.augment` replaces it)."""
        return default_views(self.info)

    def hand_features(self) -> dict[str, HandFeatures]:
        """The features a practitioner would compute from this data's raw samples, by name (the baselines of
        `contrastlab eval`). By default the samples themselves (pixels, voxels, values), with 1-NN and a
        logistic probe; a modality whose raw samples make a poor baseline (waveforms) declares its own."""
        return {"raw": HandFeatures("raw", as_they_are, ("nn", "logistic"))}

    def load_split(self, split: str) -> Dataset:
        """The dataset of one split ("train", "val" or "test")."""
        raise NotImplementedError

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Samples -> one batch. Variable-length data overrides it, e.g. with `pad_collate`."""
        return default_collate(samples)

    def split(self, name: str) -> Dataset:
        if name not in self._splits:
            dataset = self.load_split(name)
            if self.normal_class is not None and name in ("train", self.bank_split):
                dataset = self._one_class(dataset)
            self._splits[name] = dataset
        return self._splits[name]

    def split_sizes(self) -> dict[str, int]:
        """Samples in each split read so far (a run's dataset record; reading a split just to count it may be slow)."""
        return {name: len(dataset) for name, dataset in self._splits.items()}

    def skipped_count(self) -> int:
        """Unreadable files skipped so far (`on_bad_file: skip`, datamodules/badfiles.py) in the splits read:
        left out when a split was listed, or found bad while decoding, in this process or a loader worker."""
        total = 0
        for dataset in self._splits.values():
            bad = getattr(getattr(dataset, "dataset", dataset), "bad_files", None)  # through a one-class Subset
            total += bad.count() if bad is not None else 0
        return total

    def check_normal_class(self, num_classes: int, multilabel: bool = False) -> None:
        """Refuse a `normal_class` that the data's classes do not hold."""
        if self.normal_class is None:
            return
        if multilabel or num_classes == 0:
            raise ConfigError(
                "data.normal_class needs single-label data (one class index per sample); "
                f"{'these labels are multi-label' if multilabel else 'this data has no labels'}: remove it"
            )
        if not 0 <= self.normal_class < num_classes:
            name, last = self.info.name, num_classes - 1
            raise ConfigError(f"data.normal_class must be a class of {name}, 0 to {last}; got {self.normal_class}")

    def _one_class(self, dataset: Dataset) -> Dataset:
        info = self.info
        self.check_normal_class(info.num_classes, info.multilabel)
        if isinstance(dataset, TensorSamples):
            normal = dataset.y == self.normal_class
            return TensorSamples(dataset.x[normal], dataset.y[normal])
        labels = getattr(dataset, "labels", None)
        if labels is None:  # a dataset that keeps no label list: read each sample once
            labels = [dataset[i][LABEL] for i in range(len(dataset))]
        return Subset(dataset, [i for i, y in enumerate(labels) if int(y) == self.normal_class])

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
            collate_fn=self.collate,
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
        done = compat.batches_done(trainer)
        epoch = trainer.current_epoch
        if done >= sampler.batches_per_epoch:  # saved at the epoch's end: the next epoch starts afresh
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "consumed": done * sampler.global_batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._resume_position = (state["epoch"], state["consumed"])

    # -- loaders --------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split("train"), train=True)

    def eval_loader(self, split: str) -> DataLoader:
        """One split in its stored order, batched by `collate`: for feature banks, evaluation, embeddings."""
        return self._loader(self.split(split), train=False)

    def eval_loaders(self, split: str) -> dict[str, DataLoader]:
        """The named loaders of an evaluation pass: `bank` (the kNN bank) and `query` (the split evaluated)."""
        return {BANK_LOADER: self.eval_loader(self.bank_split), QUERY_LOADER: self.eval_loader(split)}

    def val_dataloader(self) -> dict[str, DataLoader]:
        return self.eval_loaders("val")

    def test_dataloader(self) -> dict[str, DataLoader]:
        return self.eval_loaders("test")

    def predict_dataloader(self) -> DataLoader:
        return self.eval_loader("test")
