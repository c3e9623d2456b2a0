"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers")."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import heads, optim
from contrastlab.modules.core.distributed import all_reduce_sum
from contrastlab.modules.core.momentum import MomentumModule


class DINO(MomentumModule):
    """Self-distillation without labels: the student h(f(view)) of every view, global and local (multi-crop),
    matches the teacher h'(f'(view)) of the other global views, the teacher being an EMA of the student. The
    teacher's outputs are centred by a running mean c over the global batch (all-reduced) and sharpened by a low
    temperature, which together keep it from collapsing; see `losses.dino_loss`.

    Args:
        out_dim: K, the head's outputs (65536 on ImageNet; far fewer on small data).
        proj_hidden_dim, bottleneck_dim, proj_layers: the head's MLP (2048, 256, 3 layers).
        norm_last_layer: keep the weight-normalised last layer's norms at 1.
        student_temperature: tau_s (0.1).
        teacher_temperature, warmup_teacher_temperature, teacher_temperature_warmup_epochs: tau_t rises linearly
            from the warm-up value to its own over the first epochs (0.04 -> 0.04..0.07 over 30 in the paper),
            held by epoch, so that a resumed run continues the same schedule.
        center_momentum: m of c <- m c + (1 - m) mean(teacher outputs) (0.9).
        freeze_last_layer_epochs: epochs at whose optimiser steps the last layer does not move (1).
        momentum, final_momentum: the teacher's EMA momentum, from 0.996 to 1 along a cosine.
    """

    multi_crop = True

    def __init__(
        self,
        out_dim: int = 65536,
        proj_hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        proj_layers: int = 3,
        norm_last_layer: bool = True,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        teacher_temperature_warmup_epochs: int = 0,
        center_momentum: float = 0.9,
        freeze_last_layer_epochs: int = 1,
        momentum: float = 0.996,
        final_momentum: float | None = 1.0,
        **base,
    ):
        temperatures = {
            "student_temperature": student_temperature,
            "teacher_temperature": teacher_temperature,
            "warmup_teacher_temperature": warmup_teacher_temperature,
        }
        for key, value in temperatures.items():
            if value <= 0:
                raise ConfigError(f"model.init_args.{key} must be > 0, got {value}")
        if not 0 <= center_momentum < 1:
            raise ConfigError(f"model.init_args.center_momentum must be in [0, 1), got {center_momentum}")
        if teacher_temperature_warmup_epochs < 0 or freeze_last_layer_epochs < 0:
            raise ConfigError(
                "model.init_args.teacher_temperature_warmup_epochs and freeze_last_layer_epochs must be >= 0"
            )
        super().__init__(momentum=momentum, final_momentum=final_momentum, **base)
        self.head = heads.DINOHead(
            self.feature_dim, out_dim, proj_hidden_dim, bottleneck_dim, proj_layers, norm_last_layer
        )
        self.teacher_backbone = self.momentum_copy(self.backbone)
        self.teacher_head = self.momentum_copy(self.head)
        self.register_buffer("center", torch.zeros(out_dim))
        self.global_views = self.view_groups[0].count

    def teacher_temperature(self) -> float:
        hp = self.hparams
        warmup = hp.teacher_temperature_warmup_epochs
        if self.current_epoch >= warmup:
            return hp.teacher_temperature
        progress = self.current_epoch / warmup
        return hp.warmup_teacher_temperature + progress * (hp.teacher_temperature - hp.warmup_teacher_temperature)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        hp = self.hparams
        student = self.head(torch.cat(feats)).split(feats[0].shape[0])
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(v)) for v in batch["views"][: self.global_views]]
        temperature = self.teacher_temperature()
        loss = losses.dino_loss(student, teacher, self.center, hp.student_temperature, temperature)
        with torch.no_grad():
            self.center.lerp_(losses.global_mean(teacher, reduce=all_reduce_sum), 1 - hp.center_momentum)
        self.log("train/teacher_temperature", temperature, on_step=True, on_epoch=False)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.current_epoch < self.hparams.freeze_last_layer_epochs:
            optim.hold_still(self.head.last_layer)
