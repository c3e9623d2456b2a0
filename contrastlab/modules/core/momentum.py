"""Momentum (EMA) targets shared by MoCo, MoCo v3 and BYOL.

A target is a frozen copy of an online submodule, registered on the method as an ordinary submodule,
so it lives in the state dict and every checkpoint; DDP broadcasts it from rank 0 when it wraps the
model, and every rank applies the same update to the same (all-reduced) online weights, so the
targets stay identical across ranks without communication. The momentum at each step is computed
from `trainer.global_step` and `trainer.estimated_stepping_batches`, never from a counter of our own,
so it is right after a resume.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from contrastlab.errors import ConfigError
from contrastlab.modules.core.base import ContrastiveModule


def cosine_momentum(base: float, final: float, step: int, total: int) -> float:
    """BYOL's schedule (Grill et al. 2020, sec. 3.2): m_k = final - (final - base) * (cos(pi k / K) + 1) / 2.

    It starts at `base` (k = 0) and rises to `final` at k = K; with final == base it is constant.
    """
    progress = min(1.0, step / max(1, total))
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, for every parameter, in place.

    Buffers (BatchNorm running statistics) are left to the target's own forward passes, as in MoCo's
    and BYOL's official code: they only matter when the target runs in eval mode, which it never does.
    """
    targets, onlines = list(target.parameters()), list(online.parameters())
    if len(targets) != len(onlines):
        raise ValueError(f"target and online modules differ: {len(targets)} vs {len(onlines)} parameters")
    for t, o in zip(targets, onlines, strict=True):
        t.lerp_(o, 1.0 - momentum)


def check_momentum(value: float | None, key: str) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{key} must be in [0, 1], got {value}: each step moves the target by (1 - momentum) toward the "
            "online network; typical values are 0.99 to 0.999"
        )


class MomentumModule(ContrastiveModule):
    """A ContrastiveModule with momentum targets, updated after every optimiser step.

    Args:
        momentum: the EMA momentum at the first step.
        final_momentum: the momentum reached at the last step by the cosine schedule; None keeps it
            constant (MoCo v2).
    """

    def __init__(self, momentum: float = 0.99, final_momentum: float | None = 1.0, **base):
        check_momentum(momentum, "model.init_args.momentum")
        check_momentum(final_momentum, "model.init_args.final_momentum")
        super().__init__(**base)
        # (online, target) pairs; a plain list so the online modules are not registered a second time.
        self._momentum_pairs: list[tuple[nn.Module, nn.Module]] = []

    def momentum_copy(self, online: nn.Module) -> nn.Module:
        """A frozen copy of `online` that follows it by EMA; assign it to an attribute of the method."""
        target = copy.deepcopy(online)
        target.requires_grad_(False)
        self._momentum_pairs.append((online, target))
        return target

    def current_momentum(self) -> float:
        """The momentum of the update after optimiser step `trainer.global_step` of `estimated_stepping_batches`."""
        final = self.hparams.final_momentum
        base = self.hparams.momentum
        if final is None:
            return base
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return cosine_momentum(base, final, self.trainer.global_step, total)

    def optimizer_step(self, *args, **kwargs) -> None:
        # Read the step before the optimiser runs: Lightning counts it as done once the step is taken.
        momentum = self.current_momentum()
        super().optimizer_step(*args, **kwargs)
        for online, target in self._momentum_pairs:
            ema_update_(target, online, momentum)
        self.log("train/momentum", momentum, on_step=True, on_epoch=False)
