"""Multi-positive InfoNCE computed by blocks of rows, so that the (M, M) similarity matrix never exists.

A loss over in-batch negatives compares every embedding with every other: for the 2 x 4096 views of a
GradCache step that is a 8192 x 8192 float matrix (268 MB), and autograd keeps several of them (the
logits, their softmax, the masks), 1.5 GB, far more than a small encoder's chunk. Here the forward pass
walks over blocks of `block_rows` anchors, keeping only each anchor's log-sum-exp and positive sums,
and the backward pass recomputes each block's similarities to form its gradient: memory O(block_rows x M),
at the price of a second similarity matmul. Values and gradients equal the dense
`losses.multi_positive_info_nce` (tests/modules/test_blocked_loss.py).

Positives are described by keys instead of an (M, M) mask, which would itself be quadratic: j is a positive
of anchor i when some key gives both the same value >= 0 (the sample index for views of one sample, the
class for SupCon, a patient or speaker for group positives).

`blocked_negative_logsumexp` is the same walk for losses whose denominator leaves the positives out
(DCL/DCLW): it returns each anchor's log-sum-exp over its negatives, and the positive term, which is only
O(M) dot products, stays with the caller and ordinary autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _block_positives(keys: Sequence[Tensor], rows: slice) -> Tensor:
    """(rows, M) bool: True where the two samples share a value >= 0 of any key; the anchor itself is excluded."""
    positives = None
    for key in keys:
        shared = (key[rows, None] == key[None, :]) & (key[rows, None] >= 0)
        positives = shared if positives is None else positives | shared
    anchors = torch.arange(rows.start, rows.stop, device=keys[0].device)
    positives[torch.arange(len(anchors), device=anchors.device), anchors] = False
    return positives


def _block_logits(z: Tensor, positives: Tensor, rows: slice, temperature: float, margin: float) -> Tensor:
    similarity = z[rows] @ z.T
    if margin:
        similarity = similarity - margin * positives.to(similarity.dtype)
    logits = similarity / temperature
    anchors = torch.arange(rows.start, rows.stop, device=z.device)
    logits[torch.arange(len(anchors), device=z.device), anchors] = float("-inf")
    return logits


def _row_blocks(m: int, block_rows: int) -> list[slice]:
    return [slice(start, min(start + block_rows, m)) for start in range(0, m, block_rows)]


class _BlockedInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, temperature: float, margin: float, block_rows: int, *keys: Tensor) -> Tensor:
        total = z.new_zeros(())
        anchors = 0
        for rows in _row_blocks(z.shape[0], block_rows):
            positives = _block_positives(keys, rows)
            logits = _block_logits(z, positives, rows, temperature, margin)
            n_pos = positives.sum(dim=1)
            log_norm = torch.logsumexp(logits, dim=1)
            positive_logits = logits.masked_fill(~positives, 0.0).sum(dim=1)
            has_pos = n_pos > 0
            per_anchor = log_norm - positive_logits / n_pos.clamp(min=1)
            total = total + per_anchor[has_pos].sum()
            anchors += int(has_pos.sum())
        if anchors == 0:
            raise ValueError("no anchor has a positive: check the views or labels given to the loss")
        ctx.save_for_backward(z, *keys)
        ctx.settings = (temperature, margin, block_rows, anchors)
        return total / anchors

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, *keys = ctx.saved_tensors
        temperature, margin, block_rows, anchors = ctx.settings
        grad = torch.zeros_like(z)
        scale = grad_out / anchors
        for rows in _row_blocks(z.shape[0], block_rows):
            positives = _block_positives(keys, rows)
            logits = _block_logits(z, positives, rows, temperature, margin)
            n_pos = positives.sum(dim=1, keepdim=True)
            # d loss_i / d logit_ij = softmax_ij - [j in P(i)] / |P(i)|, for anchors with a positive
            d_logits = torch.softmax(logits, dim=1) - positives.to(z.dtype) / n_pos.clamp(min=1)
            d_similarity = d_logits * ((n_pos > 0).to(z.dtype) * scale / temperature)
            grad[rows] += d_similarity @ z
            grad += d_similarity.T @ z[rows]
        return grad, None, None, None, *([None] * len(keys))


class _BlockedNegativeLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, temperature: float, block_rows: int, *keys: Tensor) -> Tensor:
        log_norm = z.new_empty(z.shape[0])
        for rows in _row_blocks(z.shape[0], block_rows):
            log_norm[rows] = torch.logsumexp(_negative_logits(z, keys, rows, temperature), dim=1)
        ctx.save_for_backward(z, log_norm, *keys)
        ctx.settings = (temperature, block_rows)
        return log_norm

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, log_norm, *keys = ctx.saved_tensors
        temperature, block_rows = ctx.settings
        grad = torch.zeros_like(z)
        for rows in _row_blocks(z.shape[0], block_rows):
            # d log_norm_i / d s_ik = softmax over i's negatives, / T
            softmax = torch.exp(_negative_logits(z, keys, rows, temperature) - log_norm[rows, None])
            d_similarity = softmax * (grad_out[rows, None] / temperature)
            grad[rows] += d_similarity @ z
            grad += d_similarity.T @ z[rows]
        return grad, None, None, *([None] * len(keys))


def _negative_logits(z: Tensor, keys: Sequence[Tensor], rows: slice, temperature: float) -> Tensor:
    positives = _block_positives(keys, rows)
    return _block_logits(z, positives, rows, temperature, 0.0).masked_fill(positives, float("-inf"))


def blocked_negative_logsumexp(z: Tensor, keys: Sequence[Tensor], temperature: float, block_rows: int) -> Tensor:
    """(M,): log sum_{k negative of i} exp(z_i . z_k / T) for every anchor i, by blocks of rows; the negatives
    of i are all samples but i and those sharing a key value >= 0 with it. `z` is used as given (normalise
    it first for cosine similarities); every anchor needs at least one negative."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    return _BlockedNegativeLogSumExp.apply(z, temperature, block_rows, *keys)


def blocked_info_nce(
    z: Tensor, keys: Sequence[Tensor], temperature: float, margin: float = 0.0, block_rows: int = 1024
) -> Tensor:
    """`losses.multi_positive_info_nce` of L2-normalised `z` whose positives share a key value, by blocks of rows.

    Args:
        z: (M, D) embeddings, not necessarily normalised (normalised here, with autograd).
        keys: (M,) integer tensors; j is a positive of i when keys[k][i] == keys[k][j] >= 0 for some k.
        temperature, margin: as in `multi_positive_info_nce`.
        block_rows: anchors per block: memory is about block_rows x M floats.
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    z = torch.nn.functional.normalize(z, dim=1)
    return _BlockedInfoNCE.apply(z, temperature, margin, block_rows, *keys)
