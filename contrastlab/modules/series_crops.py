"""TS2Vec's random overlapping crops (Yue et al. 2022, sec. 3.2 "contextual consistency").

Two crops [a1, b1] and [a2, b2] of each series with a1 <= a2 <= b1 <= b2: the overlap [a2, b1] is seen
by both in different contexts, and the loss compares the two crops' representations there. As in the
paper's code, the lengths are drawn once per batch and the position once per series, so the overlap is
the last `overlap` steps of the first crop and the first `overlap` steps of the second.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from contrastlab.errors import ConfigError


class Crops(NamedTuple):
    first: Tensor  # (B, C, L1): its last `overlap` steps are the shared segment
    first_mask: Tensor | None  # (B, L1) validity, when the batch has a padding mask
    second: Tensor  # (B, C, L2): its first `overlap` steps are the shared segment
    second_mask: Tensor | None
    overlap: int


def _randint(low: int, high: int, device: torch.device, size: tuple[int, ...] = ()) -> Tensor:
    """Uniform integers in [low, high) from torch's RNG (restored on resume, unlike numpy's)."""
    return torch.randint(low, high, size, device=device)


def take_per_row(x: Tensor, start: Tensor, length: int) -> Tensor:
    """x[..., start_b : start_b + length] for each sample b of x (B, ..., T)."""
    index = start[:, None] + torch.arange(length, device=x.device)  # B x L
    index = index.view(index.shape[0], *([1] * (x.ndim - 2)), length).expand(*x.shape[:-1], length)
    return x.gather(-1, index)


def overlapping_crops(x1: Tensor, x2: Tensor, mask: Tensor | None, min_overlap: int = 2) -> Crops:
    """Crop the first from `x1` and the second from `x2` (two views of the same batch, (B, C, T))."""
    steps = x1.shape[-1]
    if steps < min_overlap:
        raise ConfigError(
            f"data: series of {steps} steps are shorter than the {min_overlap}-step overlap the crops need; "
            "lower model.init_args.temporal_unit or use longer series"
        )
    device = x1.device
    overlap = int(_randint(min_overlap, steps + 1, device))
    left = int(_randint(0, steps - overlap + 1, device))
    right = left + overlap
    extend_left = int(_randint(0, left + 1, device))
    extend_right = int(_randint(right, steps + 1, device))
    offset = _randint(-extend_left, steps - extend_right + 1, device, (x1.shape[0],))
    start1, len1 = offset + extend_left, right - extend_left
    start2, len2 = offset + left, extend_right - left
    mask1 = take_per_row(mask, start1, len1) if mask is not None else None
    mask2 = take_per_row(mask, start2, len2) if mask is not None else None
    return Crops(take_per_row(x1, start1, len1), mask1, take_per_row(x2, start2, len2), mask2, overlap)
