"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"); with an
audio backbone on audio-caption pairs, CLAP (Elizalde et al. 2023)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastlab.contract import Batch
from contrastlab.modules import losses
from contrastlab.modules.core import checks
from contrastlab.modules.core.two_tower import TwoTowerModule


class CLIP(TwoTowerModule):
    """Both encoders' features linearly projected (no bias) into a joint space; the symmetric cross-entropy over
    the global batch's cosine similarities scaled by a learned logit scale exp(t), t initialised at log(1/0.07)
    and exp(t) clipped at 100 (the paper's fig. 3 and sec. 2.5).

    Args:
        embed_dim: the joint space's width.
        init_temperature: 1 / exp(t) at the start (0.07).
        max_logit_scale: the clip on exp(t) (100).
        learn_temperature: false keeps exp(t) fixed at 1 / init_temperature.
        **two_tower: the text tower, zero-shot templates and ContrastiveModule's arguments (see TwoTowerModule).
    """

    def __init__(
        self,
        embed_dim: int = 512,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        learn_temperature: bool = True,
        **two_tower,
    ):
        checks.positive("init_temperature", init_temperature)
        checks.positive("max_logit_scale", max_logit_scale)
        super().__init__(**two_tower)
        self.sample_projector = nn.Linear(self.feature_dim, embed_dim, bias=False)
        self.text_projector = nn.Linear(self.text_feature_dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)), requires_grad=learn_temperature)

    def scale(self) -> Tensor:
        """exp(t), clipped: clamping t keeps the value (and gives no gradient) once the clip is reached."""
        return self.logit_scale.clamp(max=math.log(self.hparams.max_logit_scale)).exp()

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        image, text = self.joint(feats[0], feats[-1])
        scale = self.scale()
        self.log("train/logit_scale", scale.detach(), on_step=True, on_epoch=False)
        return losses.paired_info_nce(self.gather(image), self.gather(text), 1 / scale, weight=0.5)
