"""Metrics of embeddings and labels, for methods during validation and for evaluation protocols alike.

Pure functions of tensors: weighted kNN (`knn.py`), label-free statistics (`embedding.py`: alignment, uniformity,
effective rank), multi-label kNN scores with mAP and AUROC (`multilabel.py`), kNN anomaly AUROC (`anomaly.py`),
cross-modal Recall@K (`retrieval.py`), zero-shot classification from class prompts (`zeroshot.py`) and DTW
distances in a child process (`dtw.py`, `dtw_worker.py`). Beside them, the Lightning callbacks a method's
`evaluators()` returns (`online.py`'s `EmbeddingMetrics` and its kin) gather a validation pass's features and
compute these. A metric knows no tracker: it returns numbers, and the caller logs them.
"""
