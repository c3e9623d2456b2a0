"""Predictive contrastive losses, as pure functions of tensors: a context predicts later steps' latents,
and each prediction must pick its own target among negatives (CPC; TS-TCC's temporal contrasting; wav2vec 2.0,
whose context at masked steps picks their quantised latents).
Tests compare each with a plain loop written from the formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.modules.losses.precision import in_float32

CPC_NEGATIVES = ("batch", "sequence", "both")


@in_float32
def cpc_terms(
    predictions: Tensor, targets: Tensor, mask: Tensor | None = None, negatives: str = "both"
) -> tuple[Tensor, Tensor, Tensor]:
    """CPC's InfoNCE for each prediction step k (van den Oord et al. 2018, eq. 4), and its accuracy.

    predictions[b, k-1, t] = W_k c_t predicts the latent z_{t+k} of sequence b; with the log-bilinear score
    f_k(z, c_t) = exp(z^T W_k c_t) (no normalisation, no temperature: W_k learns the scale),

        loss_k = -mean_{(b, t)} log( exp(z_{b,t+k} . p_{b,k,t}) / sum_{z' in X(b, t+k)} exp(z' . p_{b,k,t}) )

    over the anchors (b, t) whose steps t and t+k are both real. The candidates X(b, s) hold the positive
    z_{b,s} and the negatives:
        "batch":    z_{b',s}, the same step of the other sequences (the paper's "mixed speaker" negatives);
        "sequence": z_{b,s'}, the other steps of the same sequence ("same speaker");
        "both":     z_{b',s'}, every step of every sequence of the batch.
    Padded steps (mask False) are never candidates. The scores use every candidate (no sampling).

    Args:
        predictions: (B, K, S, D). targets: (B, S, D). mask: (B, S) bool, True on real steps; None = all real.
        negatives: "batch", "sequence" or "both".

    Returns:
        (loss_k, accuracy_k, anchors_k), each (K,): the mean loss and top-1 accuracy of each k (0 where k
        has no anchor) and how many anchors each k has.
    """
    if negatives not in CPC_NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(CPC_NEGATIVES)}, got {negatives!r}")
    b, k_max, s, d = predictions.shape
    if targets.shape != (b, s, d):
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} disagree")
    if mask is None:
        mask = torch.ones(b, s, dtype=torch.bool, device=targets.device)
    losses, accuracies, counts = [], [], []
    for k in range(1, k_max + 1):
        if k >= s:  # no step has a step k ahead
            losses.append(predictions.sum() * 0)  # zero, in the graph
            accuracies.append(predictions.new_zeros(()))
            counts.append(torch.zeros((), dtype=torch.long, device=predictions.device))
            continue
        p = predictions[:, k - 1, : s - k]  # (B, S-k, D): predictions made at t for t+k
        anchors = mask[:, : s - k] & mask[:, k:]  # (B, S-k)
        if negatives == "batch":  # logits[b, t, b'] = z_{b', t+k} . p_{b,t}
            logits = torch.einsum("btd,ctd->btc", p, targets[:, k:])
            candidates = mask[:, k:].T[None].expand(b, -1, -1)
            positive = torch.arange(b, device=p.device)[:, None].expand(-1, s - k)
        elif negatives == "sequence":  # logits[b, t, s'] = z_{b, s'} . p_{b,t}
            logits = torch.einsum("btd,bsd->bts", p, targets)
            candidates = mask[:, None, :].expand(-1, s - k, -1)
            positive = torch.arange(k, s, device=p.device)[None].expand(b, -1)
        else:  # logits[b, t, (b', s')] = z_{b', s'} . p_{b,t}
            logits = torch.einsum("btd,nd->btn", p, targets.reshape(b * s, d))
            candidates = mask.reshape(1, 1, b * s).expand(b, s - k, -1)
            positive = torch.arange(b, device=p.device)[:, None] * s + torch.arange(k, s, device=p.device)[None]
        # rows of non-anchors keep finite logits, so a row with no candidate gives no NaN to mask away
        logits = logits.masked_fill(~candidates & anchors[..., None], float("-inf"))
        log_prob = logits.log_softmax(dim=-1).gather(-1, positive[..., None]).squeeze(-1)
        correct = logits.argmax(dim=-1) == positive
        n = anchors.sum()
        losses.append(-log_prob.masked_fill(~anchors, 0.0).sum() / n.clamp(min=1))
        accuracies.append((correct & anchors).sum() / n.clamp(min=1))
        counts.append(n)
    return torch.stack(losses), torch.stack(accuracies).float(), torch.stack(counts)


@in_float32
def cpc_info_nce(predictions: Tensor, targets: Tensor, mask: Tensor | None = None, negatives: str = "both") -> Tensor:
    """CPC's loss: the mean over the prediction steps k = 1..K of `cpc_terms`' loss_k (steps with no anchor
    left out). See `cpc_terms` for the formula, the shapes and the choice of negatives."""
    loss_k, _, anchors_k = cpc_terms(predictions, targets, mask, negatives)
    if not (anchors_k > 0).any():
        raise ValueError(
            f"no step t has a real step t+1 to predict: {predictions.shape[2]} steps per sequence; "
            "use longer inputs or smaller encoder strides"
        )
    return loss_k[anchors_k > 0].mean()


@in_float32
def temporal_contrasting(future: Tensor, predicted: Tensor) -> Tensor:
    """TS-TCC's temporal contrasting (Eldele et al. 2021, eq. 3): the context of one view predicts the next
    K steps of the other; each prediction must pick its own series' true step among the batch's:

        L_TC = -1/(K B) sum_k sum_i log( exp(f_k,i . p_k,i) / sum_j exp(f_k,i . p_k,j) )

    Args:
        future: (K, B, D) the other view's representations at t+1 .. t+K.
        predicted: (K, B, D) W_k c_t, the predictions of them from the context c_t.
    """
    logits = future @ predicted.transpose(1, 2)  # K x B x B: future i against prediction j
    log_prob = F.log_softmax(logits, dim=-1)
    return -log_prob.diagonal(dim1=1, dim2=2).mean()


# -- wav2vec 2.0: masked steps pick their quantised latent among distractors of the same utterance -----------------


def sample_distractors(batch: int, masked: int, count: int, device=None) -> Tensor:
    """(batch, masked, count) indices in [0, masked): for masked step t of a row, `count` other masked steps of
    the same row, drawn uniformly with replacement, never t itself (fairseq's sample_negatives)."""
    if masked < 2:
        raise ValueError(f"distractors need at least 2 masked steps per utterance, got {masked}")
    draw = torch.randint(0, masked - 1, (batch, masked, count), device=device)
    own = torch.arange(masked, device=device)[None, :, None]
    return draw + (draw >= own).long()  # skip the step itself


@in_float32
def wav2vec2_contrastive(context: Tensor, quantised: Tensor, distractors: Tensor, temperature: float = 0.1) -> Tensor:
    """wav2vec 2.0's contrastive task (Baevski et al. 2020, eq. 3): at each masked step t, the context c_t must
    pick its quantised latent q_t among distractors q~ drawn from the other masked steps of the same utterance,

        L_m = -mean_{b, t} log( exp(sim(c_t, q_t) / k) / sum_{q~ in {q_t} + Q_t} exp(sim(c_t, q~) / k) ),

    sim the cosine similarity and k the temperature. A distractor equal to the positive (the same codebook
    entries) is left out, as fairseq does, so no step is asked to tell a code from itself.

    Args:
        context: (B, M, D) context at the M masked steps of each utterance (after the final projection).
        quantised: (B, M, D) their quantised latents (after the quantiser's projection).
        distractors: (B, M, K) indices into the M steps of the same row (`sample_distractors`).
        temperature: k > 0 (0.1 in the paper).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if context.shape != quantised.shape or distractors.shape[:2] != context.shape[:2]:
        raise ValueError(
            f"context {context.shape}, targets {quantised.shape}, distractors {distractors.shape} disagree"
        )
    b, m, d = quantised.shape
    rows = torch.arange(b, device=quantised.device)[:, None, None]
    negatives = quantised[rows, distractors]  # (B, M, K, D)
    candidates = torch.cat([quantised[:, :, None], negatives], dim=2)
    logits = F.cosine_similarity(context[:, :, None], candidates, dim=-1) / temperature
    same = (negatives == quantised[:, :, None]).all(dim=-1)
    logits[..., 1:] = logits[..., 1:].masked_fill(same, float("-inf"))
    return -logits.log_softmax(dim=-1)[..., 0].mean()


@in_float32
def codebook_diversity(probs: Tensor) -> Tensor:
    """wav2vec 2.0's diversity loss (Baevski et al. 2020, eq. 4): with p_g the softmax over codebook g's V entries
    averaged over the N steps of the batch (no Gumbel noise),

        L_d = (G V - sum_g exp(-sum_v p_gv log p_gv)) / (G V),

    0 when every entry of every codebook is used equally, near 1 when one entry takes all.

    Args:
        probs: (N, G, V) the softmax of each step over each codebook.
    """
    mean = probs.mean(dim=0)
    perplexity = torch.exp(-(mean * torch.log(mean + 1e-7)).sum(dim=-1)).sum()
    total = probs.shape[1] * probs.shape[2]
    return (total - perplexity) / total
