"""NCL (Wang et al. 2024, "Non-negative Contrastive Learning", ICLR)."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule


class NCL(ContrastiveModule):
    """SimCLR with non-negative embeddings: z = ReLU(g(f(view))) before NT-Xent. Like non-negative matrix
    factorisation against the SVD, each output dimension becomes a sparse, non-negative activation that
    tends to pick out one semantic cluster (the paper's interpretability and disentanglement claim).

    Args:
        temperature: tau of NT-Xent.
        margin: additive margin on the positive cosine.
        proj_hidden_dim, proj_dim: the projector MLP g; the paper keeps SimCLR's.
    """

    supports_grad_cache = True

    def __init__(
        self, temperature: float = 0.2, margin: float = 0.0, proj_hidden_dim: int = 2048, proj_dim: int = 128, **base
    ):
        checks.positive("temperature", temperature)
        checks.margin(margin)
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = (self.gather(self.projector(f)) for f in feats[:2])
        return losses.non_negative_nt_xent(z1, z2, self.hparams.temperature, self.hparams.margin, self.loss_block_rows)
