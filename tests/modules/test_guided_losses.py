"""CACR's and G-SimCLR's losses against slow loops written from the papers' equations: values and gradients in
float64, over view counts, batch sizes, temperatures and cluster assignments."""

import pytest
import torch
import torch.nn.functional as F

from contrastlab.modules import losses
from tests.modules.test_losses import nt_xent_reference
from tests.modules.test_losses_zoo import grads_match


def leaves(v, n, d=5, seed=0):
    torch.manual_seed(seed)
    return [torch.randn(n, d, dtype=torch.float64, requires_grad=True) for _ in range(v)]


def cacr_reference(views, tau_pos, tau_neg, alpha, beta):
    """Zheng et al. 2021, eq. 4-6, one query at a time: each query's positives and negatives weighted by their
    conditional distributions, c(x, y) = |f(x) - f(y)|^2 on the unit sphere."""
    z = [F.normalize(v, dim=1) for v in views]
    v, n = len(z), z[0].shape[0]

    def cost(x, y):
        return ((x - y) ** 2).sum()

    attraction = 0.0
    for a in range(v):
        for i in range(n):
            costs = [cost(z[a][i], z[b][i]) for b in range(v) if b != a]
            norm = sum(torch.exp(tau_pos * c) for c in costs)
            attraction = attraction + sum(torch.exp(tau_pos * c) / norm * alpha * c for c in costs)
    attraction = attraction / (v * n)
    repulsion, pairs = 0.0, 0
    for a in range(v):
        for b in range(a + 1, v):
            for i in range(n):
                costs = [cost(z[a][i], z[b][j]) for j in range(n) if j != i]
                norm = sum(torch.exp(-tau_neg * c) for c in costs)
                repulsion = repulsion + sum(torch.exp(-tau_neg * c) / norm * -beta * c for c in costs) / n
            pairs += 1
    return attraction + repulsion / pairs


@pytest.mark.parametrize(("v", "n"), [(2, 2), (2, 6), (3, 5), (5, 4)])
@pytest.mark.parametrize(
    ("tau_pos", "tau_neg", "alpha", "beta"), [(1.0, 1.0, 1.0, 1.0), (0.5, 2.0, 2.0, 0.5), (0, 0, 1, 1)]
)
def test_cacr_matches_the_papers_equations(v, n, tau_pos, tau_neg, alpha, beta):
    views = leaves(v, n, seed=v * n)
    ours = losses.cacr(views, tau_pos, tau_neg, alpha, beta)
    grads_match(ours, cacr_reference(views, tau_pos, tau_neg, alpha, beta), views)


def test_cacr_pulls_views_together_and_samples_apart():
    (z,) = leaves(1, 8)
    near = losses.cacr([z, z + 0.01 * torch.randn_like(z)])
    far = losses.cacr([z, torch.randn_like(z)])
    collapsed = losses.cacr([torch.ones_like(z), torch.ones_like(z)])
    assert near < far and near < collapsed


def guided_reference(z1, z2, labels, temperature):
    """NT-Xent (Chen et al. eq. 1) over a batch holding, for each anchor, no other sample of its pseudo-label
    (Chakraborty et al. 2020): the denominator runs over the positive and the other clusters' views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    label = torch.cat([labels, labels])
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        kept = [k for k in range(2 * n) if k != i and (k == j or label[k] < 0 or label[k] != label[i])]
        denominator = sum(torch.exp(z[i] @ z[k] / temperature) for k in kept)
        total = total - torch.log(torch.exp(z[i] @ z[j] / temperature) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n", [2, 7])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("clusters", [1, 3, 100])
def test_guided_nt_xent_matches_the_papers_equation(n, temperature, clusters):
    z1, z2 = leaves(2, n, seed=n)
    labels = torch.randint(0, clusters, (n,))
    labels[0] = -1  # not clustered yet: excludes nothing
    grads_match(
        losses.guided_nt_xent(z1, z2, labels, temperature), guided_reference(z1, z2, labels, temperature), [z1, z2]
    )


def test_guided_nt_xent_without_clusters_is_nt_xent():
    z1, z2 = leaves(2, 6)
    unknown = torch.full((6,), -1)
    assert torch.allclose(losses.guided_nt_xent(z1, z2, unknown, 0.2), nt_xent_reference(z1, z2, 0.2))
    distinct = torch.arange(6)
    assert torch.allclose(losses.guided_nt_xent(z1, z2, distinct, 0.2), nt_xent_reference(z1, z2, 0.2))
