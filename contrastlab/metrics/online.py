"""Evaluation during training: a callback that reads the features a method returns from its
validation/test steps and logs kNN top-1, probe accuracy, alignment, uniformity and effective rank.

Validation and test read named loaders: `bank` (the train split: the kNN bank) and `query` (the split
being evaluated). Features are gathered from every rank before the metrics, so they cover the whole split.
A method's `evaluators()` hook returns which of these callbacks run and the metric to monitor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor

from contrastlab.contract import POSITIONAL_LOADERS
from contrastlab.metrics.embedding import alignment, effective_rank, uniformity
from contrastlab.metrics.knn import knn_accuracy

# pdist over more points costs O(N^2) memory for a statistic that has long converged.
MAX_UNIFORMITY_POINTS = 4096


def _lists() -> defaultdict[str, list[Tensor]]:
    return defaultdict(list)  # a named function, so that the store pickles (ddp_spawn)


@dataclass
class Evaluators:
    """What a run reports and what it keeps its best checkpoint by (`monitor`, to `mode`: max or min)."""

    callbacks: list[L.Callback]
    monitor: str
    mode: str = "max"


def loader_name(trainer: L.Trainer, dataloader_idx: int) -> str:
    """The name of the evaluation loader a validation/test batch came from."""
    loaders = trainer.test_dataloaders if trainer.testing else trainer.val_dataloaders
    if isinstance(loaders, Mapping):
        return list(loaders)[dataloader_idx]
    return POSITIONAL_LOADERS[dataloader_idx] if dataloader_idx < len(POSITIONAL_LOADERS) else str(dataloader_idx)


class EmbeddingMetrics(L.Callback):
    def __init__(self, num_classes: int, knn_k: int = 20, knn_temperature: float = 0.07):
        self.num_classes = num_classes
        self.knn_k = knn_k
        self.knn_temperature = knn_temperature
        self._store: dict[str, dict[str, list[Tensor]]] = {}

    def _reset(self) -> None:
        self._store = defaultdict(_lists)

    def _collect(self, trainer: L.Trainer, outputs: dict[str, Tensor] | None, dataloader_idx: int) -> None:
        loader = loader_name(trainer, dataloader_idx)
        for key, value in (outputs or {}).items():
            self._store[loader][key].append(value.detach())

    def _compute(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str) -> None:
        if trainer.sanity_checking:
            return
        bank, query = (
            {k: self._gather(pl_module, v) for k, v in self._store[name].items()} for name in POSITIONAL_LOADERS
        )
        self._reset()
        if "features" not in query:
            return
        metrics = {"effective_rank": effective_rank(query["features"])}
        metrics["uniformity"] = uniformity(query["features"][:MAX_UNIFORMITY_POINTS])
        if "view1" in query:
            metrics["alignment"] = alignment(query["view1"], query["view2"])
        labelled = self.num_classes > 0 and (query["y"] >= 0).any()
        if labelled and "features" in bank and (bank["y"] >= 0).any():
            metrics["knn_top1"] = knn_accuracy(
                bank["features"],
                bank["y"],
                query["features"],
                query["y"],
                self.num_classes,
                k=self.knn_k,
                temperature=self.knn_temperature,
            )
        if labelled and "probe_logits" in query:
            has_label = query["y"] >= 0
            correct = query["probe_logits"][has_label].argmax(dim=1) == query["y"][has_label]
            metrics["probe_acc"] = correct.float().mean().item()
        for name, value in metrics.items():
            pl_module.log(f"{prefix}/{name}", value, sync_dist=False)  # equal on every rank

    @staticmethod
    def _gather(pl_module: L.LightningModule, chunks: list[Tensor]) -> Tensor:
        local = torch.cat(chunks)
        if pl_module.trainer.world_size == 1:
            return local
        # Ranks hold equal-sized shards: DistributedSampler pads the split to a multiple of the world size.
        return pl_module.all_gather(local).flatten(0, 1)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._compute(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._compute(trainer, pl_module, "test")
