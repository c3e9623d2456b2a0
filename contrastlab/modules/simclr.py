"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule


class SimCLR(ContrastiveModule):
    """Two views of each sample; z = g(f(view)); NT-Xent over the global batch, whose other 2(N-1) views are negatives.

    Args:
        temperature: tau of NT-Xent.
        margin: additive margin on the positive pair's cosine (AM-Softmax form; 0 = plain NT-Xent).
        proj_hidden_dim, proj_dim: the projector MLP g (Linear-BN-ReLU-Linear).
    """

    supports_grad_cache = True

    def __init__(
        self, temperature: float = 0.2, margin: float = 0.0, proj_hidden_dim: int = 2048, proj_dim: int = 128, **base
    ):
        if temperature <= 0:
            raise ConfigError(f"model.temperature must be > 0, got {temperature}")
        checks.margin(margin)
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = (self.gather(self.projector(f)) for f in feats[:2])
        return losses.nt_xent(z1, z2, self.hparams.temperature, self.hparams.margin, self.loss_block_rows)
