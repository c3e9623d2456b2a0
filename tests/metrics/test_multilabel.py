import pytest
import torch
import torch.nn.functional as F

from contrastlab.metrics.multilabel import knn_multilabel_scores, multilabel_scores


def test_knn_label_scores_match_a_slow_reference():
    torch.manual_seed(0)
    bank, queries = torch.randn(30, 6), torch.randn(7, 6)
    labels = torch.randint(0, 2, (30, 4))
    k, t = 5, 0.1
    got = knn_multilabel_scores(bank, labels, queries, k=k, temperature=t, chunk_size=3)
    for m in range(7):
        sims = F.cosine_similarity(queries[m][None], bank)
        top = sims.topk(k).indices
        weights = (sims[top] / t).exp()
        expected = (weights[:, None] * labels[top].float()).sum(0) / weights.sum()
        assert torch.allclose(got[m], expected, atol=1e-5)


def test_map_and_auroc_skip_classes_without_both_outcomes():
    targets = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])
    perfect = targets.float() * 0.9 + 0.05
    scores = multilabel_scores(perfect, targets)  # class 2 is in every sample: no AUROC for it, left out
    assert scores == {"map": pytest.approx(1.0), "auroc": pytest.approx(1.0)}
    assert multilabel_scores(1 - perfect, targets)["auroc"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="both positive and negative"):
        multilabel_scores(perfect[:, 2:], targets[:, 2:])
