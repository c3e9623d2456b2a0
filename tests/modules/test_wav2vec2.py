"""wav2vec 2.0's pieces: its two losses against loops written from the paper's equations (values and gradients,
float64), the distractors' draw, span masking, the product quantiser and the encoder's step count."""

import math

import pytest
import torch
import torch.nn.functional as F

from contrastlab.modules import losses
from contrastlab.modules.nets.wav2vec2 import GumbelQuantizer, Wav2Vec2Encoder, span_mask
from tests.modules.test_losses_zoo import grads_match


def contrastive_reference(context, quantised, distractors, temperature):
    """Baevski et al. 2020, eq. 3, one masked step at a time; a distractor equal to the target is not a candidate."""
    b, m, _ = context.shape
    total = 0.0
    for i in range(b):
        for t in range(m):
            candidates = [quantised[i, t]] + [
                quantised[i, j] for j in distractors[i, t] if not torch.equal(quantised[i, j], quantised[i, t])
            ]
            scores = [torch.exp(F.cosine_similarity(context[i, t], q, dim=0) / temperature) for q in candidates]
            total = total - torch.log(scores[0] / sum(scores))
    return total / (b * m)


@pytest.mark.parametrize(("b", "m", "k"), [(1, 2, 1), (3, 5, 4), (2, 6, 10)])
@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_wav2vec2_contrastive_matches_the_papers_equation(b, m, k, temperature):
    torch.manual_seed(b * m + k)
    context, quantised = (torch.randn(b, m, 6, dtype=torch.float64, requires_grad=True) for _ in range(2))
    distractors = losses.sample_distractors(b, m, k)
    ours = losses.wav2vec2_contrastive(context, quantised, distractors, temperature)
    grads_match(ours, contrastive_reference(context, quantised, distractors, temperature), [context, quantised])


def test_a_distractor_equal_to_its_target_is_no_candidate():
    context = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    codes = torch.randn(2, 4, dtype=torch.float64)
    quantised = codes[[0, 0, 1]][None].requires_grad_()  # steps 0 and 1 chose the same codes
    distractors = torch.tensor([[[1, 2], [0, 2], [0, 1]]])
    ours = losses.wav2vec2_contrastive(context, quantised, distractors, 0.1)
    grads_match(ours, contrastive_reference(context, quantised, distractors, 0.1), [context, quantised])


def test_distractors_are_other_steps_of_the_same_row():
    torch.manual_seed(0)
    drawn = losses.sample_distractors(4, 7, 50)
    own = torch.arange(7)[None, :, None]
    assert drawn.shape == (4, 7, 50) and (drawn != own).all() and drawn.min() == 0 and drawn.max() == 6
    with pytest.raises(ValueError, match="at least 2 masked steps"):
        losses.sample_distractors(2, 1, 3)


def diversity_reference(probs):
    """Baevski et al. 2020, eq. 4: (GV - sum_g exp(-sum_v p_gv log p_gv)) / GV over the batch-averaged softmax."""
    n, g, v = probs.shape
    perplexity = 0.0
    for group in range(g):
        mean = [sum(probs[i, group, e] for i in range(n)) / n for e in range(v)]
        perplexity = perplexity + torch.exp(-sum(p * torch.log(p + 1e-7) for p in mean))
    return (g * v - perplexity) / (g * v)


def test_codebook_diversity_matches_the_papers_equation_and_its_bounds():
    torch.manual_seed(0)
    logits = torch.randn(9, 2, 5, dtype=torch.float64, requires_grad=True)
    ours, ref = losses.codebook_diversity(logits.softmax(dim=-1)), diversity_reference(logits.softmax(dim=-1))
    grads_match(ours, ref, [logits])
    uniform = torch.full((4, 2, 8), 1 / 8)
    one_entry = F.one_hot(torch.zeros(4, 2, dtype=torch.long), 8).float()
    assert losses.codebook_diversity(uniform).abs() < 1e-5
    assert math.isclose(losses.codebook_diversity(one_entry).item(), (16 - 2) / 16, abs_tol=1e-5)


def test_span_mask_masks_spans_and_the_same_count_per_row():
    torch.manual_seed(0)
    mask = span_mask(16, 50, prob=0.5, length=4)
    counts = mask.sum(dim=1)
    assert (counts == counts[0]).all() and 2 <= counts[0] < 50
    assert 0.2 < mask.float().mean() < 0.8
    starts = (mask[:, 1:] & ~mask[:, :-1]).sum() + mask[:, 0].sum()
    assert starts < mask.sum() / 1.5  # contiguous spans, not scattered steps
    assert span_mask(3, 2, prob=0.1, length=10).all()  # two steps: both masked, each the other's distractor


def test_the_quantiser_picks_one_entry_per_codebook():
    torch.manual_seed(0)
    quantiser = GumbelQuantizer(in_dim=8, groups=2, entries=5, dim=6)
    z = torch.randn(10, 8)
    quantised, probs = quantiser(z, temperature=2.0)
    assert quantised.shape == (10, 6) and probs.shape == (10, 2, 5)
    entries = quantiser.codebooks  # (2, 5, 3): each third of a quantised vector is one entry of its codebook
    for g in range(2):
        part = quantised[:, 3 * g : 3 * g + 3]
        assert torch.isclose(part[:, None], entries[g][None]).all(dim=-1).any(dim=1).all()
    quantised.sum().backward()  # straight-through: the choice's logits get a gradient
    assert quantiser.logits.weight.grad.abs().sum() > 0
    quantiser.eval()
    assert torch.equal(quantiser(z, 2.0)[0], quantiser(z, 0.5)[0])  # the argmax, no noise


def test_the_encoder_counts_its_steps_and_masks_them():
    encoder = Wav2Vec2Encoder(
        strides=[5, 4, 2], conv_width=8, dim=8, layers=1, heads=2, ffn_dim=16, pos_kernel=5, pos_groups=2
    )
    x = torch.randn(2, 1, 1000)
    z = encoder.latents(x)
    assert z.shape == (2, encoder.num_steps(1000), 8) and encoder(x).shape == (2, 8)
    mask = torch.zeros(2, z.shape[1], dtype=torch.bool)
    mask[:, :3] = True
    encoder.eval()
    assert not torch.allclose(encoder.context(z, mask), encoder.context(z))
    other = torch.cat([z[:, :6] * 5 + 1, z[:, 6:]], dim=1)
    mask[:, 3:6] = True  # the masked steps' latents are never read
    assert torch.allclose(encoder.context(other, mask), encoder.context(z, mask), atol=1e-6)
