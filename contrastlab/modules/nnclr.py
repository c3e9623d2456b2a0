"""NNCLR (Dwibedi et al. 2021, "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import heads
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.core.distributed import gather_no_grad
from contrastlab.modules.core.memory import EmbeddingQueue, check_queue_fits_data


class NNCLR(ContrastiveModule):
    """z = g(f(view)), p = h(z); the positive of view 1 is NN(z1), its nearest neighbour in a support set
    Q of past embeddings, contrasted against view 2's predictions p2 of the global batch (eq. 2); the
    loss is symmetrised and the step's z1, gathered from every rank, enter Q.

    Args:
        temperature: tau (0.1).
        queue_size: the support set's size (98,304 in the paper); at most the training set's size.
        proj_hidden_dim, proj_dim: the projector g, 3 layers with BN after the output.
        pred_hidden_dim: the predictor h, 2 layers, proj_dim -> proj_dim.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        queue_size: int = 98304,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 256,
        pred_hidden_dim: int = 4096,
        **base,
    ):
        if temperature <= 0:
            raise ConfigError(f"model.init_args.temperature must be > 0, got {temperature}")
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim, num_layers=3, last_bn=True)
        self.predictor = heads.mlp(proj_dim, pred_hidden_dim, proj_dim)
        self.support = EmbeddingQueue(queue_size, proj_dim)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            check_queue_fits_data(self.hparams.queue_size, self.trainer)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = (self.projector(f) for f in feats[:2])
        p1, p2 = (self.gather(self.predictor(z)) for z in (z1, z2))
        nn1, nn2 = (gather_no_grad(self.support.nearest(z)) for z in (z1, z2))
        temperature = self.hparams.temperature
        loss = (losses.info_nce(nn1, p2, temperature) + losses.info_nce(nn2, p1, temperature)) / 2
        self.support.enqueue(gather_no_grad(z1.detach()))
        return loss
