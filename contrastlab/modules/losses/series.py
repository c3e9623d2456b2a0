"""Timestamp-level contrastive losses of the time-series methods, as pure functions of tensors (TS2Vec, SoftCLT).

Representations are timestamp-level, (B, T, D). TS2Vec contrasts them by raw dot products (no
normalisation, no temperature), between the same timestamp of two views of one series (instance-wise)
and between the same series at two timestamps (temporal), at every scale of a max-pooling pyramid.
SoftCLT replaces the one-hot targets of both by soft ones: from the DTW distance of two series, and from
the time lag of two timestamps. TS-TCC's temporal contrasting is in `predictive.py`, with CPC's. Tests compare each
with a loop written from the formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.modules.losses.precision import in_float32


def pair_weights(targets: Tensor) -> Tensor:
    """(N, N) targets between items -> (2N, 2N) weights between the items of two views, self excluded.

    Item i of either view gives weight targets[i, j] to item j of either view (SoftCLT's duplication of
    its soft-label matrix); the one-hot targets of TS2Vec (the identity) leave one positive per anchor:
    the same item in the other view.
    """
    weights = targets.repeat(2, 2)
    return weights.masked_fill(torch.eye(len(weights), dtype=torch.bool, device=weights.device), 0.0)


def _weighted_contrast(z: Tensor, weights: Tensor) -> Tensor:
    """z (G, 2N, D): G groups of the N items of two views. For each group and anchor i,
    -sum_{j != i} w_ij log softmax_{j != i}(z_i . z_j), summed and divided by 2 N G."""
    groups, items = z.shape[0], z.shape[1]
    self_mask = torch.eye(items, dtype=torch.bool, device=z.device)
    logits = (z @ z.transpose(1, 2)).masked_fill(self_mask, float("-inf"))
    log_prob = F.log_softmax(logits, dim=-1).masked_fill(self_mask, 0.0)
    return -(log_prob * weights.to(log_prob.dtype)).sum() / (items * groups)


@in_float32
def instance_contrastive(z1: Tensor, z2: Tensor, targets: Tensor | None = None) -> Tensor:
    """TS2Vec's instance-wise contrastive loss (Yue et al. 2022, eq. 2), or SoftCLT's soft one (eq. 5).

    At each timestamp t, anchor r_{i,t} of one view is contrasted with the 2B - 1 others at t, the
    positive being r'_{i,t} of the other view:

        l_inst = -1/(2BT) sum_t sum_{anchors a} sum_{c != a} w_ac log softmax_{c != a}(r_a . r_c)

    with w the identity across views (hard), or (SoftCLT) w_ac = targets[a mod B, c mod B].

    Args:
        z1, z2: (B, T, D) representations of the same timestamps in two views.
        targets: (B, B) soft assignments between the batch's series (diagonal 1), None for TS2Vec's.
    """
    batch = z1.shape[0]
    if batch == 1:  # no other series: zero, still connected to the graph (DDP expects every gradient)
        return 0.0 * (z1.sum() + z2.sum())
    if targets is None:
        targets = torch.eye(batch, device=z1.device)
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # T x 2B x D
    return _weighted_contrast(z, pair_weights(targets))


@in_float32
def temporal_contrastive(z1: Tensor, z2: Tensor, targets: Tensor | None = None) -> Tensor:
    """TS2Vec's temporal contrastive loss (eq. 1), or SoftCLT's soft one (eq. 7).

    For each series, anchor r_{i,t} of one view is contrasted with the 2T - 1 other timestamps of both
    views, the positive being r'_{i,t}; with `targets` (T, T), w_ac = targets[a mod T, c mod T].
    """
    steps = z1.shape[1]
    if steps == 1:
        return 0.0 * (z1.sum() + z2.sum())
    if targets is None:
        targets = torch.eye(steps, device=z1.device)
    z = torch.cat([z1, z2], dim=1)  # B x 2T x D
    return _weighted_contrast(z, pair_weights(targets))


def _halve(z: Tensor) -> Tensor:
    return F.max_pool1d(z.transpose(1, 2), kernel_size=2).transpose(1, 2)


@in_float32
def hierarchical_contrastive(
    z1: Tensor,
    z2: Tensor,
    alpha: float = 0.5,
    temporal_unit: int = 0,
    instance_targets: Tensor | None = None,
    tau_temp: float = 0.0,
) -> Tensor:
    """TS2Vec's hierarchical contrastive loss (Yue et al. 2022, Algorithm 1), SoftCLT's with soft targets.

    At scale d = 0, 1, ... the representations are max-pooled along time by 2^d until one step is left;
    each scale adds alpha * l_inst and, from scale `temporal_unit` on, (1 - alpha) * l_temp (not at the
    last, one-step scale); the sum is divided by the number of scales.

    Args:
        z1, z2: (B, T, D) representations of the overlap of two crops.
        alpha: weight of the instance-wise term (SoftCLT's lambda).
        instance_targets: (B, B) soft instance targets (`soft_instance_targets`), the same at every scale.
        tau_temp: SoftCLT's temporal sharpness; > 0 gives soft temporal targets
            `soft_temporal_targets(T_d, tau_temp * 2^d)` at scale d (a step there spans 2^d steps), 0 TS2Vec's.
    """
    loss = z1.new_zeros(())
    scale = 0
    while z1.shape[1] > 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive(z1, z2, instance_targets)
        if scale >= temporal_unit and alpha != 1:
            targets = soft_temporal_targets(z1.shape[1], tau_temp * 2**scale, z1.device) if tau_temp > 0 else None
            loss = loss + (1 - alpha) * temporal_contrastive(z1, z2, targets)
        scale += 1
        z1, z2 = _halve(z1), _halve(z2)
    if alpha != 0:
        loss = loss + alpha * instance_contrastive(z1, z2, instance_targets)
    return loss / (scale + 1)


def normalise_distances(distances: Tensor) -> Tensor:
    """SoftCLT's scaling of a pairwise distance matrix to [0, 1]: the diagonal set to the smallest
    off-diagonal distance, then each column min-max scaled (as scikit-learn's MinMaxScaler in the
    reference code), so each series is at distance 0 from itself."""
    n = distances.shape[0]
    distances = distances.clone().to(torch.float64)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=distances.device)
    distances.fill_diagonal_(distances[off_diagonal].min() if n > 1 else 0.0)
    low, high = distances.min(dim=0, keepdim=True).values, distances.max(dim=0, keepdim=True).values
    return (distances - low) / (high - low).clamp(min=1e-12)


def soft_instance_targets(distances: Tensor, tau: float, alpha: float = 0.5) -> Tensor:
    """SoftCLT's soft instance assignments (Lee et al. 2024, eq. 3): 2 alpha sigmoid(-tau D_ij) off the
    diagonal and 1 on it, for distances D normalised to [0, 1] (`normalise_distances`); alpha in [0, 1]
    caps the weight of another series (at D = 0) at alpha."""
    eye = torch.eye(distances.shape[0], dtype=distances.dtype, device=distances.device)
    return (2 * alpha * torch.sigmoid(-tau * distances)).masked_fill(eye.bool(), 0.0) + eye


def soft_temporal_targets(steps: int, tau: float, device: torch.device | None = None) -> Tensor:
    """SoftCLT's soft temporal assignments (eq. 6): 2 sigmoid(-tau |t - t'|), 1 on the diagonal, weights
    below 1e-6 set to 0 (as the reference code)."""
    t = torch.arange(steps, device=device, dtype=torch.float32)
    weights = 2 * torch.sigmoid(-tau * (t[:, None] - t[None, :]).abs())
    return weights.masked_fill(weights < 1e-6, 0.0)
