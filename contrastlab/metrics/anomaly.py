"""One-class anomaly detection: kNN anomaly scores against the normal training set, and their AUROC.

Used by mean-shifted contrastive learning (modules/msc.py), in the protocol of Reiss & Hoshen: train on the
normal class only; a test sample is anomalous when its class is not among the training split's classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from contrastlab.contract import BANK_LOADER, QUERY_LOADER
from contrastlab.metrics.online import EmbeddingMetrics


@torch.no_grad()
def knn_anomaly_scores(bank: Tensor, queries: Tensor, k: int = 2, chunk_size: int = 1024) -> Tensor:
    """(M,) mean cosine distance (1 - cos) of each query to its k nearest bank features; higher = more anomalous."""
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = [
        1 - (q @ bank.T).topk(k, dim=1).values.mean(dim=1)
        for q in F.normalize(queries.float(), dim=1).split(chunk_size)
    ]
    return torch.cat(scores)


def anomaly_auroc(scores: Tensor, anomalous: Tensor) -> float:
    """Area under the ROC curve of `scores` for telling anomalous (True) from normal samples (torchmetrics)."""
    if anomalous.all() or not anomalous.any():
        raise ValueError("AUROC needs both normal and anomalous samples")
    return binary_auroc(scores.float(), anomalous.long()).item()


class AnomalyMetrics(EmbeddingMetrics):
    """The label-free statistics of EmbeddingMetrics (alignment, uniformity, effective rank) plus `auroc`:
    kNN anomaly scores of the split against the bank (the normal training split), a sample counting as
    anomalous when its label is not among the bank's labels. kNN top-1 and the probe have no meaning when
    the bank holds one class, so they are not logged.
    """

    def __init__(self, k: int = 2):
        super().__init__(num_classes=0)
        self.k = k

    def _compute(self, trainer, pl_module, prefix: str) -> None:
        if not trainer.sanity_checking and self._store[QUERY_LOADER].get("features"):
            bank, query = (
                {k: self._gather(pl_module, self._store[name][k]) for k in ("features", "y")}
                for name in (BANK_LOADER, QUERY_LOADER)
            )
            normal = bank["y"][bank["y"] >= 0].unique()
            labelled = query["y"] >= 0
            anomalous = ~torch.isin(query["y"][labelled], normal)
            if normal.numel() and anomalous.any() and not anomalous.all():
                scores = knn_anomaly_scores(bank["features"], query["features"][labelled], self.k)
                pl_module.log(f"{prefix}/auroc", anomaly_auroc(scores, anomalous), sync_dist=False)
        super()._compute(trainer, pl_module, prefix)
