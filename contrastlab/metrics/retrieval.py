"""Paired data (an image and its report, a clip and its caption): cross-modal retrieval Recall@K.

Sample i of the query split has one embedding per side, `features` (side A) and `paired_features`
(side B), and its match is itself: Recall@K is the share of queries whose match is among the K most
similar (cosine) of the other side, as CLIP and ConVIRT report it, in both directions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.contract import QUERY_LOADER
from contrastlab.metrics.online import EmbeddingMetrics

RECALL_KS = (1, 5, 10)


@torch.no_grad()
def recall_at_k(a: Tensor, b: Tensor, ks: tuple[int, ...] = RECALL_KS, chunk_size: int = 1024) -> dict[str, float]:
    """`{"a_to_b_recall_at_1": ..., "b_to_a_recall_at_1": ..., "recall_at_1": mean of both, ...}` for
    (N, D) embeddings a and b whose row i is a pair. A tie with the match counts against it."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{a.shape[0]} embeddings on one side, {b.shape[0]} on the other: pairs must align")
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    out: dict[str, float] = {}
    for name, queries, keys in (("a_to_b", a, b), ("b_to_a", b, a)):
        ranks = []  # how many keys score at least as high as the query's own match, the match excluded
        for start in range(0, queries.shape[0], chunk_size):
            sims = queries[start : start + chunk_size] @ keys.T
            own = sims[torch.arange(sims.shape[0]), torch.arange(start, start + sims.shape[0])]
            ranks.append((sims >= own[:, None]).sum(dim=1) - 1)
        rank = torch.cat(ranks)
        for k in ks:
            out[f"{name}_recall_at_{k}"] = (rank < k).float().mean().item()
    for k in ks:
        out[f"recall_at_{k}"] = (out[f"a_to_b_recall_at_{k}"] + out[f"b_to_a_recall_at_{k}"]) / 2
    return out


class RetrievalMetrics(EmbeddingMetrics):
    """The statistics of EmbeddingMetrics plus Recall@K between the two sides of the query split.

    A paired method's `_eval_step` returns `paired_features` beside `features` for the query loader; its
    `evaluators()` returns this callback and monitors `val/recall_at_1`.

    Args:
        ks: the K of Recall@K.
        keys: the outputs holding side A and side B. A method whose `features` (kNN, probe, effective rank) are
            not in the joint space, e.g. an image backbone's features under a projection head, returns the
            joint-space embeddings under other keys and names them here.
        num_classes, knn_k, knn_temperature: as EmbeddingMetrics (kNN top-1 of `features` on labelled data).
    """

    def __init__(
        self,
        ks: tuple[int, ...] = RECALL_KS,
        keys: tuple[str, str] = ("features", "paired_features"),
        num_classes: int = 0,
        knn_k: int = 20,
        knn_temperature: float = 0.07,
    ):
        super().__init__(num_classes, knn_k, knn_temperature)
        self.ks = tuple(ks)
        self.keys = tuple(keys)

    def _compute(self, trainer, pl_module, prefix: str) -> None:
        query = self._store[QUERY_LOADER]
        if not trainer.sanity_checking and all(query.get(key) for key in self.keys):
            a, b = (self._gather(pl_module, query[key]) for key in self.keys)
            for name, value in recall_at_k(a, b, self.ks).items():
                pl_module.log(f"{prefix}/{name}", value, sync_dist=False)  # equal on every rank
        super()._compute(trainer, pl_module, prefix)
