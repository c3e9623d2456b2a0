"""CACR (Zheng et al. 2021, "Contrastive Attraction and Contrastive Repulsion for Representation Learning")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule


class CACR(ContrastiveModule):
    """V views of each sample; z = g(f(view)); each query pulls its other views closer, the farther ones harder,
    and pushes the other samples of the global batch away, the nearer ones harder (`losses.cacr`).

    With more than two views (the paper uses five) the attraction's conditional distribution has something to
    weigh; set the pipeline's `num_views`.

    Args:
        tau_pos, tau_neg: inverse temperatures of the positive and negative conditional distributions (1.0,
            and 0.9 on CIFAR-10 in the paper; 0 weighs uniformly).
        alpha, beta: the weights of attraction and repulsion (1.0, 1.0).
        proj_hidden_dim, proj_dim: the projector MLP g.
    """

    def __init__(
        self,
        tau_pos: float = 1.0,
        tau_neg: float = 0.9,
        alpha: float = 1.0,
        beta: float = 1.0,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        **base,
    ):
        checks.non_negative("tau_pos", tau_pos, "0 weighs every positive alike")
        checks.non_negative("tau_neg", tau_neg, "0 weighs every negative alike")
        checks.positive("alpha", alpha)
        checks.positive("beta", beta)
        super().__init__(**base)
        if self.augment.num_views < 2:
            raise ConfigError(
                f"model.augment.init_args.num_views={self.augment.num_views}: CACR contrasts views of each "
                "sample; give at least 2"
            )
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        hp = self.hparams
        views = [self.gather(self.projector(f)) for f in feats]
        return losses.cacr(views, hp.tau_pos, hp.tau_neg, hp.alpha, hp.beta)
