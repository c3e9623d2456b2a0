"""Ops shared by the view pipelines of every modality (audio, series, sequence, vision, volume).

Every op works on a batch (B, ...) on any device and draws its parameters per sample, without a Python loop:
`chosen` says which samples an op with probability p applies to, `on_chosen` computes an op on those samples
only, `uniform` draws one value per sample and `per_sample` broadcasts it over the sample's other dimensions.
`per_view` and `triple` read options given once or per view / per axis; `random_crop`, `centre_crop` and `gain`
act on the last (time) axis. A bad option is a `ConfigError` naming its key (`model.augment.<key>`).

Random draws: `chosen` draws one number per sample from torch's generator even at p = 0 or p = 1, so the
random stream after an op does not depend on its probability; `draw_when_certain=False` (the series ops and
`AudioOp`, as they were written) draws nothing at p >= 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from contrastlab.errors import ConfigError

PerView = float | Sequence[float]
Range = tuple[float, float]


def chosen(x: Tensor, p: float, keepdim: bool = False, draw_when_certain: bool = True) -> Tensor:
    """Which samples an op with probability p applies to: (B,) bool, or (B, 1, ..., 1) with `keepdim`."""
    if p >= 1 and not draw_when_certain:
        mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    else:
        mask = torch.rand(x.shape[0], device=x.device) < p
    return mask.view(-1, *([1] * (x.ndim - 1))) if keepdim else mask


def on_chosen(x: Tensor, p: float, op: Callable[[Tensor], Tensor], draw_when_certain: bool = True) -> Tensor:
    """`op` applied to the samples chosen with probability p only (the others are not computed at all): one
    index-select and one scatter per batch. Without `draw_when_certain`, p <= 0 and p >= 1 draw nothing."""
    if not draw_when_certain:
        if p <= 0:
            return x
        if p >= 1:
            return op(x)
    picked = chosen(x, p).nonzero().flatten()
    if picked.numel() == 0:
        return x
    return x.index_copy(0, picked, op(x.index_select(0, picked)))


def uniform(x: Tensor, low: float, high: float) -> Tensor:
    """(B,) values drawn uniformly in [low, high], one per sample."""
    return torch.empty(x.shape[0], device=x.device).uniform_(low, high)


def per_sample(values: Tensor, x: Tensor) -> Tensor:
    """(B,) values as (B, 1, ..., 1) in x's dtype, to scale or shift each sample of x."""
    return values.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def per_view(value: PerView, num_views: int, name: str) -> list[float]:
    """An option given once (every view) or once per view, as one float per view."""
    if isinstance(value, int | float):
        return [float(value)] * num_views
    values = [float(v) for v in value]
    if len(values) != num_views:
        raise ConfigError(f"model.augment.{name}: {len(values)} per-view values given for {num_views} views")
    return values


def triple(value, name: str) -> tuple:
    """An option given once or per axis (D, H, W), as three values."""
    values = tuple(value) if isinstance(value, Sequence) else (value,) * 3
    if len(values) != 3:
        raise ConfigError(f"{name}: give one value or three (D, H, W), got {value}")
    return values


def check_probability(p: float, name: str) -> float:
    if not 0 <= p <= 1:
        raise ConfigError(f"{name}: probability must be in [0, 1], got {p}")
    return p


def check_views(num_views: int) -> int:
    if num_views < 1:
        raise ConfigError(f"model.augment.num_views must be >= 1, got {num_views}")
    return num_views


def random_crop(x: Tensor, length: int, start: Tensor | None = None) -> Tensor:
    """(B, C, length) windows of x (B, C, T) starting at `start` (B,) steps; random starts by default."""
    total = x.shape[-1]
    if length >= total:
        return x
    if start is None:
        start = torch.randint(0, total - length + 1, (x.shape[0],), device=x.device)
    index = start.view(-1, 1, 1) + torch.arange(length, device=x.device).view(1, 1, -1)
    return x.gather(-1, index.expand(x.shape[0], x.shape[1], length))


def centre_crop(x: Tensor, length: int) -> Tensor:
    """The centred `length` steps of x's last axis (all of it when shorter)."""
    start = (x.shape[-1] - length) // 2
    return x if length >= x.shape[-1] else x[..., start : start + length]


def gain(x: Tensor, db: Tensor) -> Tensor:
    """x scaled by `db` (B,) decibels: amplitude factor 10^(db / 20)."""
    return x * per_sample(torch.pow(10.0, db / 20), x)
