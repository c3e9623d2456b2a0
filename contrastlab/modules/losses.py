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
