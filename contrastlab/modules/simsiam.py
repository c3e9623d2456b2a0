"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning"), with the DirectPred
predictor as an option (Tian, Chen & Ganguli 2021, "Understanding self-supervised learning dynamics
without contrastive pairs")."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.modules import losses
from contrastlab.modules.core import heads
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.core.distributed import gather_no_grad


class SimSiam(ContrastiveModule):
    """z = g(f(view)), p = h(z); loss = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2 with D the
    negative cosine (eq. 1). No negatives and no momentum encoder: the stop-gradient and the predictor
    are what keeps the representation from collapsing.

    Args:
        proj_hidden_dim, proj_dim: the projector g, 3 layers with BN after the output (2048, 2048).
        pred_hidden_dim: the bottleneck of the MLP predictor h (512).
        predictor: "mlp", the paper's trained predictor, or "directpred", a linear predictor set each
            step from the eigen-decomposition of the running correlation of z (`heads.DirectPredictor`).
        directpred_rho, directpred_eps, directpred_update_every: DirectPred's rho, epsilon and frequency.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 2048,
        pred_hidden_dim: int = 512,
        predictor: Literal["mlp", "directpred"] = "mlp",
        directpred_rho: float = 0.3,
        directpred_eps: float = 0.1,
        directpred_update_every: int = 1,
        **base,
    ):
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim, num_layers=3, last_bn=True)
        if predictor == "directpred":
            self.predictor = heads.DirectPredictor(proj_dim, directpred_rho, directpred_eps, directpred_update_every)
        else:
            self.predictor = heads.mlp(proj_dim, pred_hidden_dim, proj_dim)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = (self.projector(f) for f in feats[:2])
        if isinstance(self.predictor, heads.DirectPredictor):
            self.predictor.update(gather_no_grad(torch.cat([z1, z2]).detach()))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return (losses.negative_cosine(p1, z2.detach()) + losses.negative_cosine(p2, z1.detach())) / 2
