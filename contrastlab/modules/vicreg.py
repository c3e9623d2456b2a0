"""VICReg (Bardes et al. 2022, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule


class VICReg(ContrastiveModule):
    """Two views; z = h(f(view)) through an expander; three terms on the global batch: invariance (the
    views' embeddings agree), variance (each dimension keeps a standard deviation of at least `gamma`,
    which prevents collapse without negatives) and covariance (dimensions are decorrelated).

    Args:
        sim_weight, var_weight, cov_weight: lambda, mu, nu of the paper (25, 25, 1).
        gamma: the target standard deviation of each dimension.
        proj_hidden_dim, proj_dim, proj_layers: the expander (3 layers of 8192 in the paper).
    """

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        gamma: float = 1.0,
        proj_hidden_dim: int = 8192,
        proj_dim: int = 8192,
        proj_layers: int = 3,
        **base,
    ):
        for key, value in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
            checks.non_negative(key, value, "the paper uses 25, 25 and 1")
        if var_weight == 0 and cov_weight == 0:
            raise ConfigError(
                "model.init_args: var_weight and cov_weight are both 0, which leaves only the invariance term "
                "and lets every embedding collapse to one point; keep var_weight > 0 (the paper uses 25)"
            )
        checks.positive("gamma", gamma)
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim, num_layers=proj_layers)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = (self.gather(self.projector(f)) for f in feats[:2])
        invariance, variance, covariance = losses.vicreg_terms(z1, z2, self.hparams.gamma)
        self.log_dict({"train/invariance": invariance, "train/variance": variance, "train/covariance": covariance})
        hp = self.hparams
        return hp.sim_weight * invariance + hp.var_weight * variance + hp.cov_weight * covariance
