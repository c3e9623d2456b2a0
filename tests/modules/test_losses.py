import math

import pytest
import torch
import torch.nn.functional as F

from contrastlab.modules import losses


def nt_xent_reference(z1, z2, temperature):
    """SimCLR eq. 1 as written, one pair at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denominator = sum(torch.exp(z[i] @ z[k] / temperature) for k in range(2 * n) if k != i)
        total = total - torch.log(torch.exp(z[i] @ z[j] / temperature) / denominator)
    return total / (2 * n)


def supcon_reference(z, labels, temperature):
    """Khosla et al. eq. 2 (L_out) as written."""
    z = F.normalize(z, dim=1)
    total, anchors = 0.0, 0
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(torch.exp(z[i] @ z[a] / temperature) for a in range(len(z)) if a != i)
        total = total - sum(torch.log(torch.exp(z[i] @ z[p] / temperature) / denominator) for p in positives) / len(
            positives
        )
        anchors += 1
    return total / anchors


@pytest.mark.parametrize("batch", [2, 5, 16])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_nt_xent_matches_reference_values_and_gradients(batch, temperature):
    torch.manual_seed(batch)
    z1 = torch.randn(batch, 8, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(batch, 8, dtype=torch.float64, requires_grad=True)
    ours = losses.nt_xent(z1, z2, temperature)
    ref = nt_xent_reference(z1, z2, temperature)
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-10)
    g_ours = torch.autograd.grad(ours, [z1, z2])
    g_ref = torch.autograd.grad(ref, [z1, z2])
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_multi_positive_info_nce_is_supcon_with_label_positives(temperature):
    torch.manual_seed(0)
    z = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3, 1, 2, 0, 1])
    ours = losses.multi_positive_info_nce(z, labels[:, None] == labels[None, :], temperature)
    ref = supcon_reference(z, labels, temperature)
    assert torch.allclose(ours, ref, rtol=1e-10)
    assert torch.allclose(torch.autograd.grad(ours, z)[0], torch.autograd.grad(ref, z)[0], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", ["multi_positive_info_nce", "nt_xent"])
def test_the_loss_reads_no_value_back_from_the_device(name):
    """On a GPU every read of a value (`.item()`, `if t.any()`, a boolean index) waits for the device, each step.
    A meta tensor has no values: any such read raises, forward or backward."""
    z = torch.randn(8, 4, device="meta", requires_grad=True)
    if name == "nt_xent":
        loss = losses.nt_xent(z[:4], z[4:], temperature=0.2)
    else:
        loss = losses.multi_positive_info_nce(z, losses.view_positives(4, 2).to("meta"), 0.2)
    loss.backward()
    assert loss.shape == () and z.grad.shape == z.shape


def test_nt_xent_of_identical_views_is_near_its_lower_bound():
    # Aligned positives, orthogonal negatives: loss = log(1 + (2N-2) e^{-1/T})
    z = torch.eye(4, dtype=torch.float64) * 10
    loss = losses.nt_xent(z, z, temperature=0.1)
    expected = math.log(1 + 6 * math.exp(-10))  # positive similarity 1, negatives 0, over T=0.1
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_view_positives_pairs_each_sample_with_its_other_views():
    mask = losses.view_positives(3, 2)
    assert mask.shape == (6, 6)
    assert mask[0, 3] and mask[3, 0] and not mask[0, 1] and mask.sum() == 12  # diagonal included


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="temperature"):
        losses.nt_xent(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
    with pytest.raises(ValueError, match="shape"):
        losses.nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="no anchor has a positive"):
        losses.multi_positive_info_nce(torch.randn(3, 2), torch.zeros(3, 3, dtype=torch.bool), 0.5)


# -- momentum, predictor and memory methods (MoCo v2/v3, BYOL, SimSiam, NNCLR) -------------------------


def info_nce_reference(q, k, temperature):
    """InfoNCE as written: query i against every key, key i its positive."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    total = 0.0
    for i in range(len(q)):
        denominator = sum(torch.exp(q[i] @ k[j] / temperature) for j in range(len(k)))
        total = total - torch.log(torch.exp(q[i] @ k[i] / temperature) / denominator)
    return total / len(q)


def queue_info_nce_reference(q, k, queue, temperature):
    """MoCo eq. 1 as written: one positive key, the queue's entries the negatives."""
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    total = 0.0
    for i in range(len(q)):
        positive = torch.exp(q[i] @ k[i] / temperature)
        negatives = sum((torch.exp(q[i] @ n / temperature) for n in queue), torch.zeros((), dtype=q.dtype))
        total = total - torch.log(positive / (positive + negatives))
    return total / len(q)


def assert_same_value_and_gradients(ours, ref, inputs):
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, inputs, allow_unused=True, materialize_grads=True)
    g_ref = torch.autograd.grad(ref, inputs, allow_unused=True, materialize_grads=True)  # an empty queue is unused
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def random_inputs(seed, *shapes):
    torch.manual_seed(seed)
    return [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("batch", [1, 4, 13])
@pytest.mark.parametrize("temperature", [0.1, 0.2, 1.0])
def test_info_nce_matches_reference(batch, temperature):
    q, k = random_inputs(batch, (batch, 6), (batch, 6))
    assert_same_value_and_gradients(losses.info_nce(q, k, temperature), info_nce_reference(q, k, temperature), [q, k])


@pytest.mark.parametrize("batch, queue_size", [(1, 0), (3, 5), (8, 32)])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_queue_info_nce_matches_reference(batch, queue_size, temperature):
    q, k, queue = random_inputs(batch + queue_size, (batch, 5), (batch, 5), (queue_size, 5))
    ours = losses.queue_info_nce(q, k, queue, temperature)
    assert_same_value_and_gradients(ours, queue_info_nce_reference(q, k, queue, temperature), [q, k, queue])


def test_queue_info_nce_ignores_the_other_keys_of_the_batch():
    q, k, queue = random_inputs(0, (4, 3), (4, 3), (6, 3))
    moved = k.detach().clone()
    moved[1:] = torch.randn(3, 3, dtype=torch.float64)  # query 0's loss sees only k[0] and the queue
    first = losses.queue_info_nce(q[:1], k[:1], queue, 0.2)
    assert torch.allclose(first, losses.queue_info_nce(q[:1], moved[:1], queue, 0.2))
    assert first.item() == pytest.approx(queue_info_nce_reference(q[:1], k[:1], queue, 0.2).item())


@pytest.mark.parametrize("batch", [1, 6, 17])
def test_normalized_mse_is_byol_eq_2(batch):
    p, z = random_inputs(batch, (batch, 7), (batch, 7))
    ref = sum(((p[i] / p[i].norm() - z[i] / z[i].norm()) ** 2).sum() for i in range(batch)) / batch
    assert_same_value_and_gradients(losses.normalized_mse(p, z), ref, [p, z])


@pytest.mark.parametrize("batch", [1, 6, 17])
def test_negative_cosine_is_simsiam_d(batch):
    p, z = random_inputs(batch, (batch, 7), (batch, 7))
    ref = -sum(p[i] @ z[i] / (p[i].norm() * z[i].norm()) for i in range(batch)) / batch
    assert_same_value_and_gradients(losses.negative_cosine(p, z), ref, [p, z])


def test_momentum_losses_name_bad_inputs():
    with pytest.raises(ValueError, match="temperature"):
        losses.info_nce(torch.randn(4, 3), torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="shape"):
        losses.info_nce(torch.randn(4, 3), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        losses.queue_info_nce(torch.randn(4, 3), torch.randn(4, 3), torch.randn(2, 3), -1.0)
    with pytest.raises(ValueError, match="shape"):
        losses.queue_info_nce(torch.randn(4, 3), torch.randn(3, 3), torch.randn(2, 3), 0.2)
