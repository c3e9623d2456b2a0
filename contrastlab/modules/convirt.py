"""ConVIRT (Zhang et al. 2020, "Contrastive Learning of Medical Visual Representations from Paired Images and Text")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.two_tower import TwoTowerModule


class ConVIRT(TwoTowerModule):
    """A sample encoder f_v (the backbone, on one random view) and a text encoder f_u; each followed by a
    one-hidden-layer projection g (Linear-ReLU-Linear); the bidirectional InfoNCE between v = g_v(f_v(x)) and
    u = g_u(f_u(text)) over the global batch, weighted lambda (sample->text) and 1 - lambda (text->sample).

    Args:
        temperature: tau (0.1 in the paper).
        lambd: the weight of the sample-to-text direction (0.75 in the paper).
        proj_hidden_dim, proj_dim: the projection heads (the paper: 512-d joint space).
        **two_tower: the text tower, zero-shot templates and ContrastiveModule's arguments (see TwoTowerModule).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        lambd: float = 0.75,
        proj_hidden_dim: int = 512,
        proj_dim: int = 512,
        **two_tower,
    ):
        checks.positive("temperature", temperature)
        checks.fraction("lambd", lambd)
        super().__init__(**two_tower)
        self.sample_projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim, batch_norm=False)
        self.text_projector = heads.mlp(self.text_feature_dim, proj_hidden_dim, proj_dim, batch_norm=False)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        v, u = self.joint(feats[0], feats[-1])
        return losses.paired_info_nce(self.gather(v), self.gather(u), self.hparams.temperature, self.hparams.lambd)
