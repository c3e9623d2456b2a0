"""SwAV's and DINO's losses against loops written from the papers' equations: values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from contrastlab.modules import losses


def sinkhorn_reference(scores: torch.Tensor, epsilon: float, iterations: int) -> list[list[float]]:
    """Algorithm 1 of the SwAV paper, one element at a time in float64."""
    b, k = scores.shape
    q = [[math.exp(float(scores[i, j]) / epsilon) for i in range(b)] for j in range(k)]  # K x B
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for j in range(k):
            row = sum(q[j])
            q[j] = [v / row / k for v in q[j]]
        for i in range(b):
            col = sum(q[j][i] for j in range(k))
            for j in range(k):
                q[j][i] = q[j][i] / col / b
    return [[q[j][i] * b for j in range(k)] for i in range(b)]


def cross_entropy_loop(target: list[float], logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """-sum_k target_k log softmax(logits / T)_k for one sample, term by term (differentiable)."""
    scaled = [logits[k] / temperature for k in range(len(target))]
    log_norm = torch.log(sum(torch.exp(s) for s in scaled))
    return -sum(target[k] * (scaled[k] - log_norm) for k in range(len(target)))


def swav_reference(scores: list[torch.Tensor], codes: list[list[list[float]]], temperature: float) -> torch.Tensor:
    total = 0
    for i, q in enumerate(codes):
        others = [v for v in range(len(scores)) if v != i]
        per_view = 0
        for v in others:
            rows = scores[v].shape[0]
            per_view = per_view + sum(cross_entropy_loop(q[b], scores[v][b], temperature) for b in range(rows)) / rows
        total = total + per_view / len(others)
    return total / len(codes)


def dino_reference(student, teacher, center, tau_s, tau_t) -> torch.Tensor:
    terms = []
    for i, t in enumerate(teacher):
        targets = []
        for b in range(t.shape[0]):
            exps = [math.exp((float(t[b, k]) - float(center[k])) / tau_t) for k in range(t.shape[1])]
            targets.append([e / sum(exps) for e in exps])
        for v, s in enumerate(student):
            if v != i:
                terms.append(sum(cross_entropy_loop(targets[b], s[b], tau_s) for b in range(s.shape[0])) / s.shape[0])
    return sum(terms) / len(terms)


def normalised_scores(views: int, rows: int, k: int, seed: int) -> list[torch.Tensor]:
    """Cosines of random embeddings with random prototypes, as SwAV's scores are."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.nn.functional.normalize(torch.randn(k, 5, generator=g, dtype=torch.float64), dim=1)
    z = [
        torch.nn.functional.normalize(torch.randn(rows, 5, generator=g, dtype=torch.float64), dim=1)
        for _ in range(views)
    ]
    return [(v @ prototypes.T).requires_grad_() for v in z]


@pytest.mark.parametrize("epsilon, iterations", [(0.05, 3), (0.5, 1), (0.5, 30)])
def test_sinkhorn_matches_the_papers_algorithm(epsilon, iterations):
    scores = normalised_scores(1, 6, 4, seed=iterations)[0].detach()
    got = losses.sinkhorn_knopp(scores, epsilon, iterations)
    want = torch.tensor(sinkhorn_reference(scores, epsilon, iterations), dtype=torch.float32)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert torch.allclose(got.sum(dim=1), torch.ones(6), atol=1e-5)  # each sample: a distribution
    if iterations == 30:  # converged: each prototype takes an equal share of the batch
        assert torch.allclose(got.sum(dim=0), torch.full((4,), 6 / 4), atol=1e-3)


@pytest.mark.parametrize("views, assigned, temperature", [(2, 2, 0.1), (6, 2, 0.1), (4, 1, 0.5)])
def test_swav_loss_matches_the_loop_in_value_and_gradient(views, assigned, temperature):
    scores = normalised_scores(views, 3, 4, seed=views)
    codes = [losses.sinkhorn_knopp(s.detach(), 0.05, 3).double() for s in scores[:assigned]]
    got = losses.swav_loss(scores, codes, temperature)
    want = swav_reference(scores, [c.tolist() for c in codes], temperature)
    assert torch.allclose(got, want, rtol=1e-9)
    # with one assigned view its own scores enter only through its code, which carries no gradient
    got_grads = torch.autograd.grad(got, scores, allow_unused=True)
    want_grads = torch.autograd.grad(want, scores, allow_unused=True)
    for a, b in zip(got_grads, want_grads):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-8, atol=1e-12)
    trained = [g is not None and bool(g.abs().sum() > 0) for g in got_grads]
    assert trained == [assigned > 1] + [True] * (views - 1)


@pytest.mark.parametrize("views, globals_, tau_s, tau_t", [(2, 2, 0.1, 0.04), (6, 2, 0.1, 0.07), (3, 1, 0.2, 0.05)])
def test_dino_loss_matches_the_loop_in_value_and_gradient(views, globals_, tau_s, tau_t):
    g = torch.Generator().manual_seed(views)
    student = [torch.randn(3, 5, generator=g, dtype=torch.float64).requires_grad_() for _ in range(views)]
    teacher = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(globals_)]
    center = torch.randn(5, generator=g, dtype=torch.float64) * 0.3
    got = losses.dino_loss(student, teacher, center, tau_s, tau_t)
    want = dino_reference(student, teacher, center, tau_s, tau_t)
    assert torch.allclose(got, want, rtol=1e-9)
    got_grads = torch.autograd.grad(got, student, allow_unused=True)
    want_grads = torch.autograd.grad(want, student, allow_unused=True)
    for a, b in zip(got_grads, want_grads):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-8, atol=1e-12)
    # a single teacher view's own student output has no other view's target to match
    assert [g is not None for g in got_grads] == [globals_ > 1] + [True] * (views - 1)


def test_the_centre_moves_the_teachers_targets_and_is_the_mean_row():
    teacher = [torch.tensor([[1.0, 0.0], [3.0, 2.0]]), torch.tensor([[2.0, 4.0]])]
    assert torch.equal(losses.global_mean(teacher), torch.tensor([2.0, 2.0]))
    student = [torch.zeros(2, 2), torch.tensor([[5.0, 0.0], [5.0, 0.0]])]
    centred = losses.dino_loss(student, teacher[:1], torch.tensor([10.0, 0.0]), 0.1, 0.04)
    plain = losses.dino_loss(student, teacher[:1], torch.zeros(2), 0.1, 0.04)
    assert not torch.isclose(centred, plain)


def test_too_few_views_are_named():
    one = [torch.zeros(2, 3)]
    with pytest.raises(ValueError, match="SwAV needs >= 2 views"):
        losses.swav_loss(one, one)
    with pytest.raises(ValueError, match="DINO needs >= 2 views"):
        losses.dino_loss(one, one, torch.zeros(3))
