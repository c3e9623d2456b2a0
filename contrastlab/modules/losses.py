"""Contrastive losses as pure functions of tensors.

Each takes embeddings already gathered across ranks when the method wants global negatives, and
returns a scalar to minimise. Formulas and papers are in the docstrings; tests compare each with a
plain loop written from the formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def multi_positive_info_nce(z: Tensor, positives: Tensor, temperature: float) -> Tensor:
    """InfoNCE with any set of positives per anchor; NT-Xent and SupCon are special cases.

    For L2-normalised rows z_i and s_ij = z_i . z_j / T (Khosla et al. 2020, eq. 2, "L_out"):

        loss_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )

    averaged over the anchors i that have at least one positive.

    Args:
        z: (M, D) embeddings, not necessarily normalised.
        positives: (M, M) bool, True where j is a positive of i; the diagonal is ignored.
        temperature: T > 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = F.normalize(z, dim=1)
    m = z.shape[0]
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = positives & ~self_mask
    n_pos = positives.sum(dim=1)
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    has_pos = n_pos > 0
    if not has_pos.any():
        raise ValueError("no anchor has a positive: check the views or labels given to the loss")
    return per_anchor[has_pos].mean()


def view_positives(batch_size: int, num_views: int, device: torch.device | None = None) -> Tensor:
    """(V*B, V*B) bool mask: rows/columns are views stacked view-major; positives are views of one sample."""
    sample = torch.arange(batch_size, device=device).repeat(num_views)
    return sample[:, None] == sample[None, :]


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.2) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).

    With the 2N embeddings [z1; z2] and s_ij the cosine similarity over T,

        l(i, j) = -log( exp(s_ij) / sum_{k != i} exp(s_ik) ),
        loss    = 1/(2N) * sum_k [ l(k, N+k) + l(N+k, k) ].

    Args:
        z1, z2: (N, D) embeddings of two views of the same N samples, row k of each a positive pair.
        temperature: T > 0.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"the two views' embeddings differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}")
    positives = view_positives(z1.shape[0], 2, device=z1.device)
    return multi_positive_info_nce(torch.cat([z1, z2]), positives, temperature)


# -- momentum, predictor and memory methods (MoCo v2/v3, BYOL, SimSiam, NNCLR) -------------------------


def info_nce(query: Tensor, keys: Tensor, temperature: float) -> Tensor:
    """InfoNCE with in-batch negatives (van den Oord et al. 2018), the loss of MoCo v3 and NNCLR.

    Row i of `keys` is the positive of query i and the other rows are its negatives; with
    s_ij = q_i . k_j / T over L2-normalised rows,

        loss = -1/N * sum_i log( exp(s_ii) / sum_j exp(s_ij) ).

    Args:
        query, keys: (N, D) embeddings, not necessarily normalised.
        temperature: T > 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if query.shape != keys.shape:
        raise ValueError(f"queries and keys differ in shape: {tuple(query.shape)} vs {tuple(keys.shape)}")
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(query.shape[0], device=query.device))


def queue_info_nce(query: Tensor, keys: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo's InfoNCE (He et al. 2020, eq. 1): one positive key per query, the queue as negatives.

    With L2-normalised q_i, k_i and queue rows n_m,

        loss = -1/N * sum_i log( exp(q_i.k_i / T) / (exp(q_i.k_i / T) + sum_m exp(q_i.n_m / T)) ).

    Args:
        query, keys: (N, D); row i of keys is the positive of query i (other keys are not negatives).
        queue: (M, D) negatives, M >= 0.
        temperature: T > 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if query.shape != keys.shape:
        raise ValueError(f"queries and keys differ in shape: {tuple(query.shape)} vs {tuple(keys.shape)}")
    q, k, n = (F.normalize(t, dim=1) for t in (query, keys, queue))
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ n.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's loss (Grill et al. 2020, eq. 2): ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z), mean over the batch.

    The target gets no special treatment here: the method passes it from the EMA network or detached.
    """
    return (2 - 2 * F.cosine_similarity(prediction, target, dim=1)).mean()


def negative_cosine(prediction: Tensor, target: Tensor) -> Tensor:
    """SimSiam's D(p, z) = -p/||p|| . z/||z|| (Chen & He 2021, eq. 1), mean over the batch.

    The stop-gradient of SimSiam's loss belongs to the method, which passes `z.detach()`.
    """
    return -F.cosine_similarity(prediction, target, dim=1).mean()
