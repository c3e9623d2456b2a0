import math

import pytest
import torch
import torch.nn.functional as F

from contrastlab.metrics.embedding import alignment, effective_rank, uniformity
from contrastlab.metrics.knn import knn_accuracy, weighted_knn_predict


def knn_reference(bank, bank_labels, queries, num_classes, k, temperature):
    bank, queries = F.normalize(bank, dim=1), F.normalize(queries, dim=1)
    predictions = []
    for q in queries:
        sims = [(float(q @ b), int(label)) for b, label in zip(bank, bank_labels, strict=True)]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for sim, label in sims[:k]:
            votes[label] += math.exp(sim / temperature)
        predictions.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(predictions)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_weighted_knn_matches_reference(k):
    torch.manual_seed(k)
    bank, labels, queries = torch.randn(60, 5), torch.randint(0, 4, (60,)), torch.randn(25, 5)
    ours = weighted_knn_predict(bank, labels, queries, 4, k=k, temperature=0.1, chunk_size=7)
    assert torch.equal(ours, knn_reference(bank, labels, queries, 4, k, 0.1))


def test_knn_accuracy_on_separable_clusters_and_ignores_unlabelled():
    centres = torch.eye(3) * 10
    bank = centres.repeat_interleave(10, 0) + torch.randn(30, 3) * 0.1
    labels = torch.arange(3).repeat_interleave(10)
    labels[::5] = -1
    queries = centres + torch.randn(3, 3) * 0.1
    assert knn_accuracy(bank, labels, queries, torch.tensor([0, 1, -1]), 3, k=5) == 1.0


def test_alignment_and_uniformity_formulas():
    torch.manual_seed(0)
    x, y = torch.randn(50, 4), torch.randn(50, 4)
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    assert alignment(x, y) == pytest.approx(((xn - yn).norm(dim=1) ** 2).mean().item(), rel=1e-5)
    assert alignment(x, x) == pytest.approx(0.0, abs=1e-6)
    pairs = [math.exp(-2 * float((xn[i] - xn[j]).norm() ** 2)) for i in range(50) for j in range(i + 1, 50)]
    assert uniformity(x) == pytest.approx(math.log(sum(pairs) / len(pairs)), rel=1e-4)
    # collapsed features are maximally non-uniform: log E exp(0) = 0
    assert uniformity(torch.ones(10, 4)) == pytest.approx(0.0, abs=1e-6)


def test_effective_rank_bounds():
    assert effective_rank(torch.eye(8)) == pytest.approx(8.0, rel=1e-4)
    rank_one = torch.randn(100, 1) @ torch.randn(1, 16)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=0.01)
    assert 1.0 < effective_rank(torch.randn(200, 16)) <= 16.0
