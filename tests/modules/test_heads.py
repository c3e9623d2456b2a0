"""Heads: the MLP variants and DirectPred's predictor against its formula."""

import pytest
import torch
from torch import nn

from contrastlab.modules.core import heads


def test_mlp_variants():
    with_bn = heads.mlp(4, 8, 2, num_layers=3, last_bn=True)
    assert [type(m) for m in with_bn] == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    moco_v2 = heads.mlp(4, 8, 2, batch_norm=False)
    assert [type(m) for m in moco_v2] == [nn.Linear, nn.ReLU, nn.Linear]
    assert moco_v2[0].bias is not None  # without a BatchNorm after it, the hidden layer keeps its bias


def direct_pred_reference(correlation, eps):
    """Tian et al. 2021: W = sum_j (sqrt(s_j)/max sqrt(s) + eps) u_j u_j^T, one eigenvector at a time."""
    s, u = torch.linalg.eigh(correlation)
    s = s.clamp(min=0)
    top = s.max().sqrt()
    return sum((s[j].sqrt() / top + eps) * torch.outer(u[:, j], u[:, j]) for j in range(len(s)))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_direct_pred_weights_match_the_formula(eps):
    torch.manual_seed(0)
    f = torch.randn(50, 6, dtype=torch.float64) * torch.tensor([3.0, 2, 1, 0.5, 0.1, 0.01], dtype=torch.float64)
    correlation = f.T @ f / 50
    w = heads.direct_pred_weights(correlation, eps)
    assert torch.allclose(w, direct_pred_reference(correlation, eps), atol=1e-10)
    assert torch.allclose(w, w.T, atol=1e-12)


def test_direct_predictor_tracks_the_running_correlation_and_passes_gradient_to_its_input_only():
    torch.manual_seed(0)
    predictor = heads.DirectPredictor(4, rho=0.3, eps=0.1, update_every=2)
    batches = [torch.randn(16, 4) for _ in range(3)]
    expected = torch.zeros(4, 4)
    weights = []
    for f in batches:
        predictor.update(f)
        expected = 0.3 * expected + 0.7 * f.T @ f / 16
        assert torch.allclose(predictor.correlation, expected, atol=1e-6)
        weights.append(predictor.weight.clone())
    assert torch.equal(weights[0], weights[1])  # update_every=2: the second update leaves W
    assert torch.allclose(predictor.weight, heads.direct_pred_weights(expected, 0.1), atol=1e-5)
    assert {"correlation", "weight", "updates"} <= set(predictor.state_dict())
    assert not list(predictor.parameters())
    x = torch.randn(5, 4, requires_grad=True)
    predictor(x).sum().backward()
    assert torch.allclose(x.grad, predictor.weight.sum(dim=0).expand(5, 4))
