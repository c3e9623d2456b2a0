"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning")."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.modules import losses
from contrastlab.modules.core import heads
from contrastlab.modules.core.momentum import MomentumModule


class BYOL(MomentumModule):
    """Online p = q(g(f(view))); target z' = g'(f'(other view)), an EMA of (f, g) whose momentum rises
    from 0.996 to 1 along a cosine; loss = normalised MSE between p and z', symmetrised (L + L~, eq. 2).

    Args:
        proj_hidden_dim, proj_dim: the projector g (Linear-BN-ReLU-Linear; 4096 and 256 in the paper).
        pred_hidden_dim: the predictor q, of the same shape, proj_dim -> proj_dim.
        momentum, final_momentum: tau_base and its final value, 1.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        pred_hidden_dim: int = 4096,
        momentum: float = 0.996,
        final_momentum: float | None = 1.0,
        **base,
    ):
        super().__init__(momentum=momentum, final_momentum=final_momentum, **base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)
        self.predictor = heads.mlp(proj_dim, pred_hidden_dim, proj_dim)
        self.target_backbone = self.momentum_copy(self.backbone)
        self.target_projector = self.momentum_copy(self.projector)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        p1, p2 = (self.predictor(self.projector(f)) for f in feats[:2])
        with torch.no_grad():
            z1, z2 = (self.target_projector(self.target_backbone(v)) for v in batch["views"][:2])
        return losses.normalized_mse(p1, z2) + losses.normalized_mse(p2, z1)
