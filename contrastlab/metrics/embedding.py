"""Embedding statistics that need no labels: alignment and uniformity, effective rank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def alignment(x: Tensor, y: Tensor, alpha: float = 2.0) -> float:
    """E ||f(x) - f(y)||^alpha over positive pairs of L2-normalised features (Wang & Isola 2020, eq. 4).

    Lower is better: positives map close together. Rows of x and y are paired.
    """
    x, y = F.normalize(x.float(), dim=1), F.normalize(y.float(), dim=1)
    return (x - y).norm(dim=1).pow(alpha).mean().item()


def uniformity(x: Tensor, t: float = 2.0) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of L2-normalised features (Wang & Isola 2020, eq. 5).

    Lower is better: features spread over the sphere. Its minimum for many points is about -4 (t = 2).
    """
    x = F.normalize(x.float(), dim=1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log().item()


def effective_rank(x: Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular values of the (N, D) features.

    p_k = sigma_k / sum(sigma) + eps, rank = exp(-sum p_k log p_k); between 1 and min(N, D).
    """
    sigma = torch.linalg.svdvals(x.float())
    p = sigma / sigma.sum() + eps
    return (-(p * p.log()).sum()).exp().item()
