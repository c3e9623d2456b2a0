"""DCL and DCLW (Yeh et al. 2022, "Decoupled Contrastive Learning")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule


class DCL(ContrastiveModule):
    """SimCLR's two views and projector, with the positive pair removed from the InfoNCE denominator: the
    "negative-positive coupling" that makes NT-Xent need large batches is gone, so small batches train.

    With `sigma` set this is DCLW: each positive term is weighted by 2 - a von Mises-Fisher weight, so
    that pairs already close together count less and hard positives more.

    Args:
        temperature: tau (0.1 in the paper).
        sigma: DCLW's kernel width (0.5 in the paper); None for plain DCL.
        proj_hidden_dim, proj_dim: the projector MLP.
    """

    supports_grad_cache = True

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: float | None = None,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        **base,
    ):
        checks.positive("temperature", temperature)
        checks.positive("sigma", sigma, "leave it unset (null) for DCL, 0.5 for the paper's DCLW")
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = (self.gather(self.projector(f)) for f in feats[:2])
        return losses.dcl(z1, z2, self.hparams.temperature, self.hparams.sigma, self.loss_block_rows)
