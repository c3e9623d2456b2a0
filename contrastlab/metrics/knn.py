"""Weighted k-nearest-neighbour classification on embeddings (Wu et al. 2018, "Instance discrimination")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def weighted_knn_predict(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> Tensor:
    """Class predictions for `queries` by a similarity-weighted vote of their k nearest bank samples.

    Similarity is cosine; neighbour j votes for its class with weight exp(s_j / temperature).

    Args:
        bank: (N, D) features of labelled samples; bank_labels: (N,) in [0, num_classes).
        queries: (M, D) features to classify.
    Returns:
        (M,) predicted labels.
    """
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    predictions = []
    for chunk in F.normalize(queries.float(), dim=1).split(chunk_size):
        sims, idx = (chunk @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(chunk.shape[0], num_classes, device=chunk.device, dtype=weights.dtype)
        votes.scatter_add_(1, bank_labels[idx], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    bank: Tensor, bank_labels: Tensor, queries: Tensor, query_labels: Tensor, num_classes: int, **kwargs
) -> float:
    """Top-1 accuracy of `weighted_knn_predict` on the labelled queries (labels >= 0) against the labelled bank."""
    in_bank = bank_labels >= 0
    labelled = query_labels >= 0
    if not in_bank.any() or not labelled.any():
        raise ValueError("kNN accuracy needs labelled samples in both the bank and the queries")
    pred = weighted_knn_predict(bank[in_bank], bank_labels[in_bank], queries[labelled], num_classes, **kwargs)
    return (pred == query_labels[labelled]).float().mean().item()
