"""The row-blocked InfoNCE (modules/losses/blocked.py) equals the dense loss in value and gradient, for view, class and
group positives, with a margin, unlabelled samples and blocks that do not divide the batch; so does the blocked
log-sum-exp over negatives that DCL/DCLW use."""

from __future__ import annotations

import pytest
import torch

from contrastlab.modules import losses
from contrastlab.modules.losses.blocked import blocked_info_nce, blocked_negative_logsumexp


def dense_reference(z, keys, temperature, margin):
    """The loss from its formula, one anchor at a time (Khosla et al. 2020, eq. 2, with an additive margin)."""
    z = torch.nn.functional.normalize(z, dim=1)
    total, anchors = 0.0, 0
    for i in range(len(z)):
        positives = [j for j in range(len(z)) if j != i and any(k[i] == k[j] and k[i] >= 0 for k in keys)]
        if not positives:
            continue
        logits = [(z[i] @ z[j] - (margin if j in positives else 0.0)) / temperature for j in range(len(z)) if j != i]
        others = [j for j in range(len(z)) if j != i]
        log_norm = torch.logsumexp(torch.stack(logits), dim=0)
        total = total - sum(logits[others.index(p)] - log_norm for p in positives) / len(positives)
        anchors += 1
    return total / anchors


CASES = {
    "views": lambda n: [torch.arange(n).repeat(2)],
    "classes": lambda n: [torch.arange(n).repeat(2), torch.tensor([0, 1, 1, 2, -1, 0, 2, -1, 1][:n]).repeat(2)],
    "groups only": lambda n: [torch.tensor([3, 3, 5, -1, 5, 7, 7, 3, -1][:n]).repeat(2)],
}


@pytest.mark.parametrize("block_rows", [1, 4, 7, 64])
@pytest.mark.parametrize("margin", [0.0, 0.2])
@pytest.mark.parametrize("case", list(CASES))
def test_blocked_equals_the_formula_in_value_and_gradient(case, margin, block_rows):
    torch.manual_seed(0)
    keys = CASES[case](9)
    z = torch.randn(18, 5, dtype=torch.float64, requires_grad=True)
    blocked = blocked_info_nce(z, keys, 0.3, margin, block_rows)
    (grad_blocked,) = torch.autograd.grad(blocked, z)
    reference = dense_reference(z, keys, 0.3, margin)
    (grad_reference,) = torch.autograd.grad(reference, z)
    assert torch.allclose(blocked, reference, rtol=1e-10)
    assert torch.allclose(grad_blocked, grad_reference, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("block_rows", [1, 5, 64])
@pytest.mark.parametrize("case", list(CASES))
def test_blocked_negative_logsumexp_equals_the_formula_in_value_and_gradient(case, block_rows):
    torch.manual_seed(2)
    keys = CASES[case](9)
    z = torch.randn(18, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(18, dtype=torch.float64)  # a weighted sum, so every anchor's gradient counts apart
    blocked = blocked_negative_logsumexp(z, keys, 0.3, block_rows)
    (grad_blocked,) = torch.autograd.grad(blocked @ upstream, z)
    reference = torch.stack(
        [
            torch.logsumexp(
                torch.stack(
                    [
                        z[i] @ z[k] / 0.3
                        for k in range(18)
                        if k != i and not any(key[i] == key[k] and key[i] >= 0 for key in keys)
                    ]
                ),
                0,
            )
            for i in range(18)
        ]
    )
    (grad_reference,) = torch.autograd.grad(reference @ upstream, z)
    assert torch.allclose(blocked, reference, rtol=1e-10)
    assert torch.allclose(grad_blocked, grad_reference, rtol=1e-8, atol=1e-12)


def test_the_losses_take_the_blocked_path_and_agree_with_their_dense_selves():
    torch.manual_seed(1)
    z1, z2 = torch.randn(2, 40, 8).unbind(0)
    labels = torch.randint(-1, 4, (40,))
    for fn, args in [
        (losses.nt_xent, (z1, z2, 0.2, 0.1)),
        (losses.supcon, ([z1, z2], labels, 0.1, 0.0)),
        (losses.non_negative_nt_xent, (z1, z2, 0.2, 0.0)),
        (losses.dcl, (z1, z2, 0.1, None)),
        (losses.dcl, (z1, z2, 0.1, 0.5)),
    ]:
        dense = [t.detach().requires_grad_() for t in (z1, z2)]
        blocked = [t.detach().requires_grad_() for t in (z1, z2)]

        def call(pair, block_rows, fn=fn, args=args):
            swapped = (pair, *args[1:]) if isinstance(args[0], list) else (*pair, *args[2:])
            return fn(*swapped, block_rows=block_rows)

        a, b = call(dense, None), call(blocked, 16)
        a.backward(), b.backward()
        assert torch.allclose(a, b, rtol=1e-5), fn.__name__
        for d, k in zip(dense, blocked):
            assert torch.allclose(d.grad, k.grad, rtol=1e-4, atol=1e-7), fn.__name__


def test_no_anchor_with_a_positive_is_refused():
    with pytest.raises(ValueError, match="no anchor has a positive"):
        blocked_info_nce(torch.randn(4, 3), [torch.tensor([0, 1, 2, -1])], 0.1, block_rows=2)


def saved_for_backward(loss_fn) -> int:
    """Bytes of the tensors autograd keeps between the forward and the backward pass of `loss_fn()`."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn()
    return sum(saved)


def test_the_blocked_loss_keeps_no_similarity_matrix_for_backward():
    """The dense loss keeps (M, M) matrices until backward; the blocked one keeps only the (M, D) embeddings
    (its blocks live one at a time, inside the forward and the backward pass)."""
    m, d = 2048, 16
    z = torch.randn(m, d, requires_grad=True)
    keys = [torch.arange(m // 2).repeat(2)]
    dense = saved_for_backward(lambda: losses.keyed_info_nce(z, keys, 0.2))
    blocked = saved_for_backward(lambda: losses.keyed_info_nce(z, keys, 0.2, block_rows=128))
    assert dense > m * m * 4
    assert blocked < 8 * m * d * 4  # a few (M, D) copies (z, its normalised form) and the (M,) keys
