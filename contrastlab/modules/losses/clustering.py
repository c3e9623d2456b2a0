"""Losses of the multi-crop methods, as pure functions of tensors: SwAV's swapped prediction of cluster
assignments (Sinkhorn-Knopp) and DINO's self-distillation from a centred, sharpened teacher.

Both compare the first views (the global crops) with every other view. Where a statistic spans the global batch
(Sinkhorn's row and column sums, DINO's centre), the function takes `reduce`, a sum over ranks: the method passes
the all-reduce (`modules/core/distributed.all_reduce_sum`), one process the identity, so the same code gives one
process's result on the whole batch and each rank's part of it under DDP. Tests compare each with a loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.modules.losses.precision import in_float32

Reduce = Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, iterations: int = 3, reduce: Reduce = _identity) -> Tensor:
    """SwAV's equipartitioned soft assignments (Caron et al. 2020, sec. 3.1 and algorithm 1).

    Q = exp(scores / epsilon)^T, (K prototypes, B samples of the global batch), scaled alternately so that every
    prototype gets 1/K of the mass and every sample 1/B, `iterations` times; returns B * Q^T, (B, K), each row a
    distribution over prototypes. The scores are cosines (normalised embeddings and prototypes), so exp(1 /
    epsilon) stays far inside float32 without the max-subtraction a free logit would need.

    Args:
        scores: (B, K) this rank's samples' scores against the prototypes (the queue's rows too, when used).
        reduce: sums a tensor over ranks (the identity on one process).
    """
    q = torch.exp(scores.float() / epsilon).T
    prototypes = q.shape[0]
    samples = reduce(torch.tensor(float(q.shape[1]), device=q.device))
    q /= reduce(q.sum())
    for _ in range(iterations):
        q /= reduce(q.sum(dim=1, keepdim=True))
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= samples
    return (q * samples).T


@in_float32
def swav_loss(scores: Sequence[Tensor], assignments: Sequence[Tensor], temperature: float = 0.1) -> Tensor:
    """SwAV's swapped prediction (eq. 1-2, multi-crop): each global view's assignment q_i is predicted from every
    other view v's scores, -sum_k q_ik log softmax(s_v / tau)_k, averaged over samples, over the V - 1 other views
    and over the assigned views.

    Args:
        scores: V tensors (B, K) of each view's embedding against the prototypes, the global views first.
        assignments: the first len(assignments) views' Sinkhorn-Knopp codes (B, K), without gradient.
    """
    if len(assignments) > len(scores) or len(scores) < 2:
        raise ValueError(f"SwAV needs >= 2 views and at most one assignment per view, got {len(scores)} views")
    log_p = [F.log_softmax(s / temperature, dim=1) for s in scores]
    total = scores[0].new_zeros(())
    for i, q in enumerate(assignments):
        swapped = [-(q * log_p[v]).sum(dim=1).mean() for v in range(len(scores)) if v != i]
        total = total + torch.stack(swapped).mean()
    return total / len(assignments)


@in_float32
def dino_loss(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    center: Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> Tensor:
    """DINO's self-distillation (Caron et al. 2021, eq. 2-3): teacher targets softmax((t - c) / tau_t) of the global
    views, student log softmax(s / tau_s) of every view; the cross-entropy of each pair of a teacher view and a
    different student view, averaged over samples and over those pairs.

    Args:
        student: V tensors (B, K) of the student head's outputs, the global views first.
        teacher: G tensors (B, K) of the teacher head's outputs on the G global views (no gradient).
        center: (K,) the running mean of the teacher's outputs (`global_mean`), subtracted before sharpening.
    """
    if len(teacher) > len(student) or len(student) < 2:
        raise ValueError(f"DINO needs >= 2 views and at most one teacher output per view, got {len(student)} views")
    targets = [F.softmax((t - center) / teacher_temperature, dim=1) for t in teacher]
    log_p = [F.log_softmax(s / student_temperature, dim=1) for s in student]
    terms = [-(q * log_p[v]).sum(dim=1).mean() for i, q in enumerate(targets) for v in range(len(student)) if v != i]
    return torch.stack(terms).mean()


@torch.no_grad()
def global_mean(rows: Sequence[Tensor], reduce: Reduce = _identity) -> Tensor:
    """The mean row of `rows` (tensors (B, K)) over every rank's rows: DINO's batch centre (eq. 4)."""
    stacked = torch.cat(list(rows)).float()
    return reduce(stacked.sum(dim=0)) / reduce(torch.tensor(float(stacked.shape[0]), device=stacked.device))
