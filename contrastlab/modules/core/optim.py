"""Optimisers and the learning-rate schedule shared by every method."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import timm.optim
import torch
from torch import nn

from contrastlab.errors import ConfigError


@dataclass
class OptimizerConfig:
    """The optimiser and its schedule: linear warm-up, then cosine decay to `min_lr_ratio * lr`, per step.

    Args:
        name: sgd, adamw or lars (You et al. 2017; the SimCLR/BYOL choice for large batches): timm's `Lars`,
            whose trust ratio eta * ||w|| / (||g|| + wd * ||w||) is the paper's; biases, norms and the probe
            (groups marked `lars_exclude`) take plain SGD-with-momentum steps.
        lr: peak learning rate, before `lr_scaling`.
        weight_decay: applied to weights only: never to biases and norm parameters.
        momentum: for sgd and lars.
        warmup_epochs: epochs of linear warm-up (fractions allowed).
        min_lr_ratio: final learning rate as a fraction of the peak.
        lr_scaling: scale lr by the global batch B (all devices and nodes): linear lr*B/256, sqrt lr*sqrt(B/256).
        lars_eta: LARS trust coefficient.
        predictor_lr_ratio: the predictor's lr as a multiple of `lr`, same schedule (methods with a trained
            predictor: BYOL, SimSiam, MoCo v3, NNCLR). Above 1 the predictor tracks the projector's slowly
            changing correlations faster, which shortens the non-contrastive methods' early plateau (Tian,
            Chen & Ganguli 2021, sec. 5; SimSiam keeps the predictor's lr high for the same reason).
    """

    name: Literal["sgd", "adamw", "lars"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 10.0
    min_lr_ratio: float = 0.0
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    lars_eta: float = 0.02
    predictor_lr_ratio: float = 1.0

    def __post_init__(self):
        if self.lr <= 0:
            raise ConfigError(f"model.optimizer.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"model.optimizer.weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_epochs < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("model.optimizer: warmup_epochs must be >= 0 and min_lr_ratio in [0, 1]")
        if not self.predictor_lr_ratio > 0:
            raise ConfigError(f"model.optimizer.predictor_lr_ratio must be > 0, got {self.predictor_lr_ratio}")

    def peak_lr(self, global_batch: int) -> float:
        ratio = global_batch / 256
        return self.lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[self.lr_scaling]


class Lars(timm.optim.Lars):
    """timm's Lars, which also resumes optimiser states saved by contrastlab's earlier own LARS
    (groups with `eta` and `lars_exclude` instead of timm's `trust_coeff` and `always_adapt`)."""

    def __setstate__(self, state: dict) -> None:
        defaults = state.get("defaults") or getattr(self, "defaults", {})
        for group in state.get("param_groups", []):
            if "eta" in group:
                group["trust_coeff"] = group.pop("eta")
            if "lars_exclude" in group:
                group["always_adapt"] = not group.pop("lars_exclude")
            for key, value in defaults.items():
                group.setdefault(key, value)
        super().__setstate__(state)


def param_groups(model: nn.Module, weight_decay: float, exclude: Iterable[nn.Module] = ()) -> list[dict]:
    """Trainable parameters of `model` (minus those in `exclude`) split into decayed weights and
    non-decayed biases/norm parameters (Goyal et al. 2017), the latter also excluded from LARS adaptation."""
    skip = {id(p) for m in exclude for p in m.parameters()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in skip:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(config: OptimizerConfig, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    if config.name == "lars":
        for g in groups:  # timm adapts a group when it is decayed or `always_adapt`; we adapt all but the excluded
            g["always_adapt"] = not g.pop("lars_exclude", False)
        return Lars(groups, lr=lr, momentum=config.momentum, trust_coeff=config.lars_eta)
    for g in groups:
        g.pop("lars_exclude", None)
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
    """The lr multiplier at step s: s/warmup during warm-up, then a half cosine from 1 to min_ratio."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def hold_still(module: nn.Module) -> None:
    """Drop the gradients of `module`'s parameters before an optimiser step, so that step leaves them as they are
    (an optimiser skips a parameter without a gradient: no momentum, no weight decay): SwAV's prototypes and DINO's
    last layer in their first epoch. Under DDP the gradients were already all-reduced, so every rank drops the same."""
    for p in module.parameters():
        p.grad = None
