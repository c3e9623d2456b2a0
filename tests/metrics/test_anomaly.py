import pytest
import torch
from sklearn.metrics import roc_auc_score

from contrastlab.metrics.anomaly import anomaly_auroc, knn_anomaly_scores


def test_knn_anomaly_scores_are_mean_cosine_distance_to_the_nearest_normals():
    torch.manual_seed(0)
    bank, queries = torch.randn(50, 6), torch.randn(7, 6)
    scores = knn_anomaly_scores(bank, queries, k=3, chunk_size=4)
    for q, score in zip(queries, scores, strict=True):
        distances = sorted(1 - torch.cosine_similarity(q[None], bank).tolist()[i] for i in range(50))
        assert score.item() == pytest.approx(sum(distances[:3]) / 3, abs=1e-5)


def test_auroc_matches_sklearn_and_ranks_far_points_as_anomalies():
    torch.manual_seed(1)
    normal = torch.randn(40, 4) + torch.tensor([5.0, 0, 0, 0])
    far = torch.randn(20, 4) - torch.tensor([5.0, 0, 0, 0])
    queries = torch.cat([normal[20:], far])
    anomalous = torch.tensor([False] * 20 + [True] * 20)
    scores = knn_anomaly_scores(normal[:20], queries, k=2)
    assert anomaly_auroc(scores, anomalous) == pytest.approx(roc_auc_score(anomalous.numpy(), scores.numpy()))
    assert anomaly_auroc(scores, anomalous) > 0.95
    with pytest.raises(ValueError, match="both normal and anomalous"):
        anomaly_auroc(scores, torch.ones(40, dtype=torch.bool))
