"""The loss-defined methods' losses against slow references written from the papers' formulas:
values and gradients, several batch sizes, temperatures and weights, in float64."""

import math

import pytest
import torch
import torch.nn.functional as F

from contrastlab.modules import losses
from tests.modules.test_losses import nt_xent_reference


def cos(a, b):
    return (a @ b) / (a.norm() * b.norm())


def grads_match(ours, ref, inputs, rtol=1e-8, atol=1e-10):
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-10), (ours.item(), ref.item())
    for a, b in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs), strict=True):
        assert torch.allclose(a, b, rtol=rtol, atol=atol)


def leaves(*shape, n=2, seed=0):
    torch.manual_seed(seed)
    return [torch.randn(*shape, dtype=torch.float64, requires_grad=True) for _ in range(n)]


# -- SupCon and the additive margin: one InfoNCE, positives by mask -------------------------------------------


def supcon_reference(views, labels, temperature, margin=0.0):
    """Khosla et al. eq. 2 over V views, a positive being another view of the sample or (labelled) of its class,
    with the margin m subtracted from every positive cosine."""
    z = torch.cat(views)
    n = len(labels)
    sample = [k % n for k in range(len(z))]
    label = [int(labels[k % n]) for k in range(len(z))]

    def is_positive(i, j):
        return i != j and (sample[i] == sample[j] or (label[i] >= 0 and label[i] == label[j]))

    def logit(i, j):
        return (cos(z[i], z[j]) - (margin if is_positive(i, j) else 0.0)) / temperature

    total = 0.0
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if is_positive(i, p)]
        denominator = sum(torch.exp(logit(i, a)) for a in range(len(z)) if a != i)
        total = total - sum(torch.log(torch.exp(logit(i, p)) / denominator) for p in positives) / len(positives)
    return total / len(z)


@pytest.mark.parametrize("batch", [2, 6, 12])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("num_views", [2, 3])
def test_supcon_matches_reference(batch, temperature, num_views):
    views = leaves(batch, 5, n=num_views, seed=batch)
    labels = torch.arange(batch) % 3
    labels[-1] = -1  # an unlabelled sample: its own views are its only positives
    grads_match(losses.supcon(views, labels, temperature), supcon_reference(views, labels, temperature), views)


@pytest.mark.parametrize("margin", [0.1, 0.35])
@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_margin_matches_reference_for_supcon_and_nt_xent(margin, temperature):
    views = leaves(8, 4, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 1, -1, 3, 0])
    ours = losses.supcon(views, labels, temperature, margin)
    grads_match(ours, supcon_reference(views, labels, temperature, margin), views)
    unlabelled = torch.full((8,), -1)
    grads_match(
        losses.nt_xent(*views, temperature, margin), supcon_reference(views, unlabelled, temperature, margin), views
    )


def test_margin_raises_the_loss_and_supcon_without_labels_is_nt_xent():
    z1, z2 = leaves(10, 6, seed=1)
    plain = losses.nt_xent(z1, z2, 0.2)
    assert losses.nt_xent(z1, z2, 0.2, margin=0.2) > plain
    assert torch.allclose(losses.supcon([z1, z2], torch.full((10,), -1), 0.2), plain)


def test_label_positives_ignores_unlabelled():
    mask = losses.label_positives(torch.tensor([0, 0, -1, -1, 1]))
    assert mask[0, 1] and mask[1, 0] and not mask[2, 3] and not mask[2, 2] and mask[4, 4]


# -- Barlow Twins ------------------------------------------------------------------------------------------------


def barlow_reference(z1, z2, lambd, eps=1e-5):
    n, d = z1.shape

    def standardised(z, j):
        column = z[:, j]
        mean = sum(column) / n
        var = sum((column - mean) ** 2) / n
        return (column - mean) / torch.sqrt(var + eps)

    a = [standardised(z1, j) for j in range(d)]
    b = [standardised(z2, j) for j in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[i][k] * b[j][k] for k in range(n)) / n
            total = total + ((1 - c_ij) ** 2 if i == j else lambd * c_ij**2)
    return total


@pytest.mark.parametrize("batch", [2, 7, 16])
@pytest.mark.parametrize("lambd", [5e-3, 0.5])
def test_barlow_twins_matches_reference(batch, lambd):
    z1, z2 = leaves(batch, 5, seed=batch)
    grads_match(losses.barlow_twins(z1, z2, lambd), barlow_reference(z1, z2, lambd), [z1, z2], atol=1e-9)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert losses.barlow_twins(z, z, 0.01).item() == pytest.approx(0.0, abs=1e-4)


# -- VICReg ------------------------------------------------------------------------------------------------------


def vicreg_reference(z1, z2, sim_weight, var_weight, cov_weight, gamma=1.0, eps=1e-4):
    n, d = z1.shape
    invariance = sum(((z1[b] - z2[b]) ** 2).sum() for b in range(n)) / (n * d)

    def v(z):
        out = 0.0
        for j in range(d):
            mean = sum(z[:, j]) / n
            out = out + torch.relu(gamma - torch.sqrt(sum((z[:, j] - mean) ** 2) / (n - 1) + eps))
        return out / d

    def c(z):
        means = [sum(z[:, j]) / n for j in range(d)]
        out = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = sum((z[b, i] - means[i]) * (z[b, j] - means[j]) for b in range(n)) / (n - 1)
                    out = out + cov**2
        return out / d

    return sim_weight * invariance + var_weight * (v(z1) + v(z2)) + cov_weight * (c(z1) + c(z2))


@pytest.mark.parametrize("batch", [2, 5, 12])
@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.5, 10.0)])
def test_vicreg_matches_reference(batch, weights):
    z1, z2 = leaves(batch, 4, seed=batch)
    z1.data.mul_(0.5)  # some dimensions below gamma, so the variance hinge is active
    grads_match(losses.vicreg(z1, z2, *weights), vicreg_reference(z1, z2, *weights), [z1, z2], atol=1e-9)


def test_vicreg_terms_single_out_collapse():
    torch.manual_seed(0)
    spread = torch.randn(64, 8, dtype=torch.float64) * 2
    invariance, variance, decorrelated = losses.vicreg_terms(spread, spread)
    assert invariance == 0 and variance == 0
    redundant = spread[:, :1].expand(64, 8)  # eight copies of one dimension
    assert losses.vicreg_terms(redundant, redundant)[2] > 10 * decorrelated
    collapsed = torch.ones(64, 8, dtype=torch.float64)
    _, variance, _ = losses.vicreg_terms(collapsed, collapsed)
    assert variance.item() == pytest.approx(2 * (1 - math.sqrt(1e-4)))  # both branches, every dimension


# -- DCL / DCLW --------------------------------------------------------------------------------------------------


def dcl_reference(z1, z2, temperature, sigma=None):
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    partner = [(i + n) % (2 * n) for i in range(2 * n)]
    if sigma is None:
        weights = [1.0] * (2 * n)
    else:
        kernel = [torch.exp(cos(z[i], z[partner[i]]) / sigma) for i in range(2 * n)]
        mean = sum(kernel) / (2 * n)
        weights = [2 - k / mean for k in kernel]
    total = 0.0
    for i in range(2 * n):
        negatives = [k for k in range(2 * n) if k not in (i, partner[i])]
        total = total - weights[i] * cos(z[i], z[partner[i]]) / temperature
        total = total + torch.log(sum(torch.exp(cos(z[i], z[k]) / temperature) for k in negatives))
    return total / (2 * n)


@pytest.mark.parametrize("batch", [2, 5, 16])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
@pytest.mark.parametrize("sigma", [None, 0.5])
def test_dcl_matches_reference(batch, temperature, sigma):
    z1, z2 = leaves(batch, 6, seed=batch)
    grads_match(losses.dcl(z1, z2, temperature, sigma), dcl_reference(z1, z2, temperature, sigma), [z1, z2])


def dclw_reference_code(z1, z2, temperature, sigma, detach_weight=False):
    """DCLW as the reference implementation computes it (raminnakhli/Decoupled-Contrastive-Learning, loss/dcl.py):
    one direction at a time, the positive term times 2 - N softmax(z1.z2 / sigma), averaged over both
    directions here; `detach_weight` is lightly's variant, which stops the weight's gradient."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)

    def one_way(a, b):
        cross = a @ b.T
        weight = 2 - a.shape[0] * torch.softmax((a * b).sum(dim=1) / sigma, dim=0)
        positive = -torch.diagonal(cross) / temperature * (weight.detach() if detach_weight else weight)
        mask = torch.eye(a.shape[0], dtype=torch.bool).repeat(1, 2)
        negatives = (torch.cat([a @ a.T, cross], dim=1) / temperature).masked_fill(mask, float("-inf"))
        return (positive + torch.logsumexp(negatives, dim=1)).mean()

    return (one_way(z1, z2) + one_way(z2, z1)) / 2


def test_dclw_weight_keeps_its_gradient_as_the_reference_code_does():
    z1, z2 = leaves(16, 6, seed=3)
    ours = losses.dcl(z1, z2, 0.1, sigma=0.5)
    grads_match(ours, dclw_reference_code(z1, z2, 0.1, 0.5), [z1, z2])
    ours = losses.dcl(z1, z2, 0.1, sigma=0.5)
    detached = dclw_reference_code(z1, z2, 0.1, 0.5, detach_weight=True)
    assert torch.allclose(ours, detached)  # same value: only the gradient tells the two apart
    ours_grad = torch.autograd.grad(ours, [z1])[0]
    lightly_grad = torch.autograd.grad(detached, [z1])[0]
    assert (ours_grad - lightly_grad).norm() > 1e-2 * ours_grad.norm()


def test_dcl_is_below_nt_xent_by_the_coupling_term():
    z1, z2 = leaves(12, 6, seed=2)
    # NT-Xent's per-anchor loss is DCL's plus log(1 + exp(s_ii'/T) / sum_negatives) > 0
    assert losses.dcl(z1, z2, 0.2) < losses.nt_xent(z1, z2, 0.2)


# -- NCL ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [2, 9])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_ncl_is_nt_xent_of_non_negative_features(batch, temperature):
    z1, z2 = leaves(batch, 8, seed=batch)
    ref = supcon_reference([F.relu(z1), F.relu(z2)], torch.full((batch,), -1), temperature)
    grads_match(losses.non_negative_nt_xent(z1, z2, temperature), ref, [z1, z2])
    # negative coordinates get no gradient: the loss only sees ReLU(z)
    (g1,) = torch.autograd.grad(losses.non_negative_nt_xent(z1, z2, temperature), [z1])
    assert (g1[z1 < 0] == 0).all()


# -- Mean-shifted contrastive ------------------------------------------------------------------------------------


def msc_reference(f1, f2, center, temperature, angular_weight):
    c = center / center.norm()
    phi1, phi2 = (f / f.norm(dim=1, keepdim=True) for f in (f1, f2))
    # NT-Xent's reference normalises its inputs: the mean-shifted theta = (phi - c) / ||phi - c||
    contrastive = nt_xent_reference(phi1 - c, phi2 - c, temperature)
    angular = sum(-(p @ c) for p in torch.cat([phi1, phi2])) / (2 * f1.shape[0])
    return contrastive + angular_weight * angular


@pytest.mark.parametrize("batch", [2, 5, 16])
@pytest.mark.parametrize("temperature", [0.25, 1.0])
@pytest.mark.parametrize("angular_weight", [0.0, 1.0])
def test_mean_shifted_contrastive_matches_reference(batch, temperature, angular_weight):
    f1, f2, center = leaves(batch, 6, n=3, seed=batch)
    center = center[0].detach()
    ours = losses.mean_shifted_contrastive(f1, f2, center, temperature, angular_weight)
    grads_match(ours, msc_reference(f1, f2, center, temperature, angular_weight), [f1, f2])


def test_mean_shift_changes_the_loss_only_through_the_center():
    f1, f2 = leaves(8, 5, seed=4)
    # a center at the origin direction of nothing: with angular_weight 0 and a tiny center, MSC is NT-Xent of phi
    tiny = torch.full((5,), 1e-9, dtype=torch.float64)
    near_plain = losses.mean_shifted_contrastive(f1, f2, tiny, 0.25, 0.0)
    assert not torch.allclose(near_plain, losses.nt_xent(f1, f2, 0.25))  # c is unit-normalised, never ignored
    mean = F.normalize(torch.cat([f1, f2]), dim=1).mean(0).detach()
    assert losses.mean_shifted_contrastive(f1, f2, mean, 0.25, 1.0) < losses.mean_shifted_contrastive(
        f1, f2, -mean, 0.25, 1.0
    )  # the angular term rewards features aligned with the center


# -- bad inputs ----------------------------------------------------------------------------------------------------


def test_bad_inputs_are_named():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="margin"):
        losses.nt_xent(z, z, 0.2, margin=-0.1)
    with pytest.raises(ValueError, match="two views"):
        losses.supcon([z], torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="N >= 2"):
        losses.barlow_twins(z[:1], z[:1])
    with pytest.raises(ValueError, match="N >= 2"):
        losses.vicreg(z, torch.randn(4, 2))
    with pytest.raises(ValueError, match="sigma"):
        losses.dcl(z, z, 0.1, sigma=0.0)
