"""CPC's InfoNCE against van den Oord et al. 2018, eq. 4, written as loops: values, gradients and accuracies."""

from __future__ import annotations

import pytest
import torch

from contrastlab.modules import losses


def cpc_reference(predictions, targets, mask, negatives):
    """For each k, t and sequence b with steps t and t+k real: -log softmax of z_{b,t+k} . W_k c_t among the
    candidates the negatives mode names; the mean over anchors per k, then over the k that have anchors."""
    b_size, k_max, steps, _ = predictions.shape
    per_k, accuracy = [], []
    for k in range(1, k_max + 1):
        terms, hits = [], []
        for b in range(b_size):
            for t in range(steps - k):
                if not (mask[b, t] and mask[b, t + k]):
                    continue
                p = predictions[b, k - 1, t]
                if negatives == "batch":
                    candidates = [(c, t + k) for c in range(b_size) if mask[c, t + k]]
                elif negatives == "sequence":
                    candidates = [(b, s) for s in range(steps) if mask[b, s]]
                else:
                    candidates = [(c, s) for c in range(b_size) for s in range(steps) if mask[c, s]]
                scores = torch.stack([targets[c, s] @ p for c, s in candidates])
                positive = candidates.index((b, t + k))
                terms.append(-(torch.exp(scores[positive]) / torch.exp(scores).sum()).log())
                hits.append(float(int(scores.argmax()) == positive))
        if terms:
            per_k.append(torch.stack(terms).mean())
            accuracy.append(sum(hits) / len(hits))
    return torch.stack(per_k).mean(), accuracy


def ragged_mask(lengths, steps):
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("negatives", ["batch", "sequence", "both"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
def test_cpc_info_nce_matches_the_reference_in_values_and_gradients(negatives, masked):
    torch.manual_seed(0)
    b, k, steps, d = 4, 3, 7, 5
    predictions = torch.randn(b, k, steps, d, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(b, steps, d, dtype=torch.float64, requires_grad=True)
    mask = ragged_mask([7, 5, 3, 6], steps) if masked else torch.ones(b, steps, dtype=torch.bool)
    if masked:
        mask[3, 2] = False  # a missing value inside a sequence, not only a padded tail
    ours = losses.cpc_info_nce(predictions, targets, mask if masked else None, negatives)
    ref, ref_accuracy = cpc_reference(predictions, targets, mask, negatives)
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, [predictions, targets])
    g_ref = torch.autograd.grad(ref, [predictions, targets])
    for a, r in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, r, rtol=1e-8, atol=1e-12)
    if masked:  # padding gets no gradient: it is neither an anchor nor a candidate
        assert g_ours[1][~mask].abs().max() == 0
    _, accuracy, anchors = losses.cpc_terms(predictions.detach(), targets.detach(), mask, negatives)
    assert accuracy[anchors > 0].tolist() == pytest.approx(ref_accuracy)


def test_a_prediction_equal_to_its_target_among_orthogonal_latents_is_nearly_free():
    """Scaled one-hot latents, each prediction its target: the positive dominates every candidate set."""
    steps, k = 6, 2
    targets = 20 * torch.eye(2 * steps).reshape(2, steps, 2 * steps)
    predictions = torch.stack([torch.roll(targets, -j, dims=1) for j in range(1, k + 1)], dim=1)
    for negatives in ("batch", "sequence", "both"):
        loss_k, accuracy_k, anchors_k = losses.cpc_terms(predictions, targets, None, negatives)
        assert anchors_k.tolist() == [2 * (steps - 1), 2 * (steps - 2)]
        assert loss_k.max() < 1e-6 and accuracy_k.min() == 1


def test_cpc_info_nce_refuses_sequences_too_short_to_predict_and_unknown_negatives():
    with pytest.raises(ValueError, match="no step t has a real step t\\+1"):
        losses.cpc_info_nce(torch.randn(2, 2, 1, 4), torch.randn(2, 1, 4))
    with pytest.raises(ValueError, match="negatives must be one of"):
        losses.cpc_info_nce(torch.randn(2, 2, 5, 4), torch.randn(2, 5, 4), negatives="others")


def test_cpc_info_nce_runs_in_float32_under_bf16_autocast():
    torch.manual_seed(1)
    predictions, targets = torch.randn(3, 2, 8, 6), torch.randn(3, 8, 6)
    expected = losses.cpc_info_nce(predictions, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = losses.cpc_info_nce(predictions.bfloat16(), targets.bfloat16())
    assert under.dtype == torch.float32 and torch.allclose(under, expected, atol=0.05)
