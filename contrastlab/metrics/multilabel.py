"""Multi-label evaluation: kNN label scores against the bank, and their mean average precision and AUROC.

A query's score for class c is the similarity-weighted share of its k nearest bank samples that carry c
(the multi-label form of Wu et al.'s weighted kNN); mAP and macro AUROC (torchmetrics) are averaged over
the classes that have both positive and negative queries, the others having no defined value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import multilabel_auroc, multilabel_average_precision

from contrastlab.contract import BANK_LOADER, QUERY_LOADER
from contrastlab.metrics.online import EmbeddingMetrics


@torch.no_grad()
def knn_multilabel_scores(
    bank: Tensor, bank_labels: Tensor, queries: Tensor, k: int = 20, temperature: float = 0.07, chunk_size: int = 1024
) -> Tensor:
    """(M, C) scores in [0, 1]: sum_j w_j y_jc / sum_j w_j over the k nearest bank samples j (cosine),
    w_j = exp(s_j / temperature). bank_labels: (N, C) multi-hot."""
    bank = F.normalize(bank.float(), dim=1)
    labels = bank_labels.float()
    k = min(k, bank.shape[0])
    scores = []
    for chunk in F.normalize(queries.float(), dim=1).split(chunk_size):
        sims, idx = (chunk @ bank.T).topk(k, dim=1)
        weights = torch.softmax(sims / temperature, dim=1)  # exp(s/t) normalised; stable for small t
        scores.append(torch.einsum("mk,mkc->mc", weights, labels[idx]))
    return torch.cat(scores)


def multilabel_scores(scores: Tensor, targets: Tensor) -> dict[str, float]:
    """mAP and macro AUROC of (M, C) scores for (M, C) multi-hot targets, over the classes both present and absent."""
    targets = targets.long()
    positives = targets.sum(dim=0)
    defined = (positives > 0) & (positives < targets.shape[0])
    if not defined.any():
        raise ValueError("mAP and AUROC need a class with both positive and negative samples")
    scores, targets = scores[:, defined], targets[:, defined]
    n = int(defined.sum())
    return {
        "map": multilabel_average_precision(scores, targets, num_labels=n, average="macro").item(),
        "auroc": multilabel_auroc(scores, targets, num_labels=n, average="macro").item(),
    }


class MultiLabelMetrics(EmbeddingMetrics):
    """The label-free statistics of EmbeddingMetrics plus `map` and `auroc` of kNN label scores (and
    `probe_map` of the online probe). Labels are (B, num_classes) multi-hot; a row of -1 is unlabelled."""

    def __init__(self, num_classes: int, knn_k: int = 20, knn_temperature: float = 0.07):
        super().__init__(num_classes=0, knn_k=knn_k, knn_temperature=knn_temperature)
        self.classes = num_classes

    def _compute(self, trainer, pl_module, prefix: str) -> None:
        if not trainer.sanity_checking and self._store[QUERY_LOADER].get("features"):
            bank, query = (
                {k: self._gather(pl_module, v) for k, v in self._store[name].items()}
                for name in (BANK_LOADER, QUERY_LOADER)
            )
            in_bank, labelled = (bank["y"] >= 0).all(dim=1), (query["y"] >= 0).all(dim=1)
            metrics: dict[str, float] = {}
            if in_bank.any() and labelled.any():
                scores = knn_multilabel_scores(
                    bank["features"][in_bank],
                    bank["y"][in_bank],
                    query["features"][labelled],
                    k=self.knn_k,
                    temperature=self.knn_temperature,
                )
                try:  # a split too small to hold any class both present and absent has no score
                    metrics = multilabel_scores(scores, query["y"][labelled])
                    if "probe_logits" in query:
                        probe = multilabel_scores(query["probe_logits"][labelled].sigmoid(), query["y"][labelled])
                        metrics["probe_map"] = probe["map"]
                except ValueError:
                    metrics = {}
            for name, value in metrics.items():
                pl_module.log(f"{prefix}/{name}", value, sync_dist=False)
        super()._compute(trainer, pl_module, prefix)
