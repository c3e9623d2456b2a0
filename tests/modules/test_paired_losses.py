"""The paired (two-tower) loss against ConVIRT's equations written out one pair at a time: values and gradients,
with a fixed temperature (ConVIRT) and a learned one (CLIP)."""

import math

import pytest
import torch

from contrastlab.modules import losses


def convirt_reference(v, u, temperature, lambd):
    """Zhang et al. 2020, eqs. 2-4: l_i(v->u), l_i(u->v) with cosine similarity, weighted lambda and 1 - lambda."""
    n = v.shape[0]

    def cos(a, b):
        return (a @ b) / (a.norm() * b.norm())

    total = 0.0
    for i in range(n):
        v_to_u = -torch.log(
            torch.exp(cos(v[i], u[i]) / temperature) / sum(torch.exp(cos(v[i], u[k]) / temperature) for k in range(n))
        )
        u_to_v = -torch.log(
            torch.exp(cos(u[i], v[i]) / temperature) / sum(torch.exp(cos(u[i], v[k]) / temperature) for k in range(n))
        )
        total = total + lambd * v_to_u + (1 - lambd) * u_to_v
    return total / n


@pytest.mark.parametrize("batch", [1, 3, 9])
@pytest.mark.parametrize(("temperature", "lambd"), [(0.1, 0.75), (0.07, 0.5), (1.0, 0.0), (0.5, 1.0)])
def test_paired_info_nce_matches_convirt_values_and_gradients(batch, temperature, lambd):
    torch.manual_seed(batch)
    v = torch.randn(batch, 6, dtype=torch.float64, requires_grad=True)
    u = torch.randn(batch, 6, dtype=torch.float64, requires_grad=True)
    ours = losses.paired_info_nce(v, u, temperature, lambd)
    ref = convirt_reference(v, u, temperature, lambd)
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, [v, u]), torch.autograd.grad(ref, [v, u]), strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def test_a_learned_temperature_gets_the_reference_gradient():
    """CLIP: logits scaled by exp(t); d loss / d t as the written-out loss gives it."""
    torch.manual_seed(0)
    v, u = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    t_ours = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    t_ref = t_ours.detach().clone().requires_grad_()
    ours = losses.paired_info_nce(v, u, 1 / t_ours.exp())
    ref = convirt_reference(v, u, 1 / t_ref.exp(), 0.5)
    assert torch.allclose(ours, ref, rtol=1e-10)
    (g_ours,), (g_ref,) = torch.autograd.grad(ours, [t_ours]), torch.autograd.grad(ref, [t_ref])
    assert torch.allclose(g_ours, g_ref, rtol=1e-8)


def test_paired_info_nce_refuses_mismatched_sides_and_bad_weights():
    with pytest.raises(ValueError, match="differ in shape"):
        losses.paired_info_nce(torch.randn(4, 3), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError, match="weight"):
        losses.paired_info_nce(torch.randn(4, 3), torch.randn(4, 3), 0.1, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        losses.paired_info_nce(torch.randn(4, 3), torch.randn(4, 3), 0.0)
