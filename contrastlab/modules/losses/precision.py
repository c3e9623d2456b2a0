"""Every loss runs in float32: the `in_float32` decorator the loss functions of this package share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

LossFn = TypeVar("LossFn", bound=Callable[..., Tensor])


def _float32(value):
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, list | tuple) and value and all(isinstance(v, Tensor) for v in value):
        return type(value)(_float32(v) for v in value)
    return value


def in_float32(loss: LossFn) -> LossFn:
    """Run a loss in float32 with autocast off, whatever the trainer's precision.

    Under `trainer.precision bf16-mixed` (or 16-mixed) autocast would run the similarity matmul in bf16,
    whose 8-bit mantissa leaves cosines near 1 only about 1e-2 apart; divided by a temperature of 0.1 and
    exponentiated, that is a visible error in the logits. The embeddings are small (N x D), so computing
    every loss in float32 costs nothing measurable next to the backbone, which keeps autocast.
    """

    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        if not (torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")):
            return loss(*args, **kwargs)
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return loss(*(_float32(a) for a in args), **{k: _float32(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
