"""The series losses (TS2Vec, SoftCLT, TS-TCC) against plain loops written from the papers' formulas."""

import math

import pytest
import torch

from contrastlab.modules import losses as sl


def weighted_contrast_reference(groups, weight):
    """sum over groups g, anchors a, candidates c != a of -w(a, c) log( e^{s_ac} / sum_{c' != a} e^{s_ac'} ),
    divided by (number of anchors x groups); groups[g] is (2N, D)."""
    total = 0.0
    for z in groups:
        m = len(z)
        for a in range(m):
            others = [c for c in range(m) if c != a]
            log_denominator = torch.logsumexp(torch.stack([z[a] @ z[c] for c in others]), dim=0)
            for c in others:
                w = weight(a, c)
                if w:
                    total = total - w * (z[a] @ z[c] - log_denominator)
    return total / (len(groups) * len(groups[0]))


def instance_reference(z1, z2, targets=None):
    b, t = z1.shape[:2]
    if b == 1:
        return 0.0 * (z1.sum() + z2.sum())
    groups = [torch.cat([z1[:, s], z2[:, s]]) for s in range(t)]  # each (2B, D): both views at timestamp s

    def weight(a, c):
        if targets is None:
            return 1.0 if c == (a + b) % (2 * b) else 0.0
        return targets[a % b, c % b]

    return weighted_contrast_reference(groups, weight)


def temporal_reference(z1, z2, targets=None):
    b, t = z1.shape[:2]
    if t == 1:
        return 0.0 * (z1.sum() + z2.sum())
    groups = [torch.cat([z1[i], z2[i]]) for i in range(b)]  # each (2T, D): one series, both views

    def weight(a, c):
        if targets is None:
            return 1.0 if c == (a + t) % (2 * t) else 0.0
        return targets[a % t, c % t]

    return weighted_contrast_reference(groups, weight)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def temporal_targets_reference(steps, tau):
    out = torch.zeros(steps, steps)
    for i in range(steps):
        for j in range(steps):
            w = 2 * sigmoid(-tau * abs(i - j))
            out[i, j] = w if w >= 1e-6 else 0.0
    return out


def hierarchical_reference(z1, z2, alpha, temporal_unit, instance_targets=None, tau_temp=0.0):
    """Algorithm 1 of TS2Vec, pooling by pairs with max over explicit reshapes."""
    terms, scale = [], 0
    while z1.shape[1] > 1:
        term = alpha * instance_reference(z1, z2, instance_targets)
        if scale >= temporal_unit:
            targets = temporal_targets_reference(z1.shape[1], tau_temp * 2**scale).double() if tau_temp else None
            term = term + (1 - alpha) * temporal_reference(z1, z2, targets)
        terms.append(term)
        scale += 1
        half = z1.shape[1] // 2
        z1 = z1[:, : 2 * half].reshape(z1.shape[0], half, 2, -1).amax(dim=2)
        z2 = z2[:, : 2 * half].reshape(z2.shape[0], half, 2, -1).amax(dim=2)
    terms.append(alpha * instance_reference(z1, z2, instance_targets))
    return sum(terms) / len(terms)


def assert_same_values_and_gradients(ours, ref, inputs):
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-10), (ours.item(), float(ref))
    for a, b in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs), strict=True):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-10)


def pair(b, t, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, t, d, generator=g, dtype=torch.float64).requires_grad_()
    z2 = torch.randn(b, t, d, generator=g, dtype=torch.float64).requires_grad_()
    return z1, z2


def random_targets(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    distances = sl.normalise_distances(torch.rand(n, n, generator=g, dtype=torch.float64) * 5)
    return sl.soft_instance_targets(distances, tau=2.0, alpha=0.5)


@pytest.mark.parametrize("b,t", [(1, 3), (3, 1), (4, 5)])
def test_hard_instance_and_temporal_losses_match_the_formula(b, t):
    z1, z2 = pair(b, t)
    assert_same_values_and_gradients(sl.instance_contrastive(z1, z2), instance_reference(z1, z2), [z1, z2])
    assert_same_values_and_gradients(sl.temporal_contrastive(z1, z2), temporal_reference(z1, z2), [z1, z2])


def test_soft_instance_and_temporal_losses_match_the_formula():
    z1, z2 = pair(5, 6, seed=3)
    inst = random_targets(5)
    assert_same_values_and_gradients(sl.instance_contrastive(z1, z2, inst), instance_reference(z1, z2, inst), [z1, z2])
    temp = sl.soft_temporal_targets(6, 0.7).double()
    assert_same_values_and_gradients(sl.temporal_contrastive(z1, z2, temp), temporal_reference(z1, z2, temp), [z1, z2])


def test_identity_targets_are_the_hard_losses():
    z1, z2 = pair(4, 5, seed=5)
    eye_b, eye_t = torch.eye(4, dtype=torch.float64), torch.eye(5, dtype=torch.float64)
    assert torch.allclose(sl.instance_contrastive(z1, z2, eye_b), sl.instance_contrastive(z1, z2))
    assert torch.allclose(sl.temporal_contrastive(z1, z2, eye_t), sl.temporal_contrastive(z1, z2))


@pytest.mark.parametrize("t,alpha,unit", [(7, 0.5, 0), (8, 0.3, 1), (1, 0.5, 0), (5, 1.0, 0), (6, 0.0, 0)])
def test_hierarchical_loss_matches_algorithm_1(t, alpha, unit):
    z1, z2 = pair(3, t, seed=t)
    ours = sl.hierarchical_contrastive(z1, z2, alpha=alpha, temporal_unit=unit)
    assert_same_values_and_gradients(ours, hierarchical_reference(z1, z2, alpha, unit), [z1, z2])


def test_soft_hierarchical_loss_matches_algorithm_1_with_soft_targets():
    z1, z2 = pair(4, 9, seed=11)
    inst = random_targets(4, seed=2)
    ours = sl.hierarchical_contrastive(z1, z2, alpha=0.5, instance_targets=inst, tau_temp=1.5)
    ref = hierarchical_reference(z1, z2, 0.5, 0, instance_targets=inst, tau_temp=1.5)
    assert_same_values_and_gradients(ours, ref, [z1, z2])


def test_soft_instance_targets_follow_the_sigmoid_of_normalised_distances():
    raw = torch.tensor([[0.0, 2.0, 6.0], [2.0, 0.0, 3.0], [6.0, 3.0, 0.0]], dtype=torch.float64)
    normalised = sl.normalise_distances(raw)
    # diagonal -> smallest off-diagonal distance (2), then each column min-max scaled
    expected = torch.zeros(3, 3, dtype=torch.float64)
    filled = raw.clone().fill_diagonal_(2.0)
    for j in range(3):
        column = filled[:, j]
        for i in range(3):
            expected[i, j] = (column[i] - column.min()) / (column.max() - column.min())
    assert torch.allclose(normalised, expected)
    assert torch.all(normalised.diagonal() == 0)
    tau, alpha = 3.0, 0.4
    targets = sl.soft_instance_targets(normalised, tau, alpha)
    for i in range(3):
        for j in range(3):
            want = 1.0 if i == j else 2 * alpha * sigmoid(-tau * float(normalised[i, j]))
            assert targets[i, j].item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("tau", [0.5, 2.0, 30.0])
def test_soft_temporal_targets_follow_the_sigmoid_of_the_time_lag(tau):
    ours = sl.soft_temporal_targets(9, tau)
    assert torch.allclose(ours, temporal_targets_reference(9, tau), atol=1e-7)
    assert torch.all(ours.diagonal() == 1)


def test_temporal_contrasting_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    future = torch.randn(3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    predicted = torch.randn(3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    total = 0.0
    for k in range(3):
        for i in range(5):
            scores = torch.stack([future[k, i] @ predicted[k, j] for j in range(5)])
            total = total - (scores[i] - torch.logsumexp(scores, dim=0))
    ref = total / 15
    assert_same_values_and_gradients(sl.temporal_contrasting(future, predicted), ref, [future, predicted])
