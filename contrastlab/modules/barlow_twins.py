"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule


class BarlowTwins(ContrastiveModule):
    """Two views; z = g(f(view)) through a wide projector; the cross-correlation of the two views' embeddings,
    each dimension standardised over the global batch, is pushed to the identity: invariance on the
    diagonal, redundancy reduction (weight `lambd`) off it. No negatives, no momentum encoder.

    Args:
        lambd: weight of the off-diagonal term (5.1e-3 in the paper for an 8192-d projector).
        proj_hidden_dim, proj_dim, proj_layers: the projector (3 layers of 8192 in the paper).
    """

    def __init__(
        self,
        lambd: float = 5.1e-3,
        proj_hidden_dim: int = 8192,
        proj_dim: int = 8192,
        proj_layers: int = 3,
        **base,
    ):
        checks.positive("lambd", lambd, "the off-diagonal weight; about 1/proj_dim is usual")
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim, num_layers=proj_layers)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        # Gathered: the cross-correlation is a statistic of the global batch, as the paper's all-reduce of C.
        z1, z2 = (self.gather(self.projector(f)) for f in feats[:2])
        return losses.barlow_twins(z1, z2, self.hparams.lambd)
