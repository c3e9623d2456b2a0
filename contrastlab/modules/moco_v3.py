"""MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers")."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import heads
from contrastlab.modules.core.distributed import gather_no_grad
from contrastlab.modules.core.momentum import MomentumModule


class MoCoV3(MomentumModule):
    """q = h(g(f(view))) with a predictor h; k = g'(f'(view)) from the momentum encoder; symmetric InfoNCE
    of each view's queries against the other view's keys, the global batch's other keys being the
    negatives (no queue); the loss is scaled by 2 tau as in the official code.

    Args:
        temperature: tau (0.2 for ResNets in the paper).
        proj_hidden_dim, proj_dim, proj_layers: the projector g (BN after the output, affine-free);
            2 layers for ResNets, 3 for ViTs.
        pred_hidden_dim: the predictor h, 2 layers, proj_dim -> proj_dim.
        momentum, final_momentum: the key encoder's momentum, raised from 0.99 to 1 by a cosine schedule.
        freeze_patch_embed: keep a ViT backbone's patch projection at its random initialisation (sec. 4.2: it
            removes the training instability of ViTs); the key encoder's copy then stays equal to it.
        The paper's BatchNorm across devices is `trainer.sync_batchnorm: true`.
    """

    def __init__(
        self,
        temperature: float = 0.2,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        proj_layers: int = 2,
        pred_hidden_dim: int = 4096,
        momentum: float = 0.99,
        final_momentum: float | None = 1.0,
        freeze_patch_embed: bool = False,
        **base,
    ):
        if temperature <= 0:
            raise ConfigError(f"model.init_args.temperature must be > 0, got {temperature}")
        super().__init__(momentum=momentum, final_momentum=final_momentum, **base)
        if freeze_patch_embed:
            embed = getattr(self.backbone, "patch_embed", None)
            if embed is None:
                raise ConfigError(
                    f"model.init_args.freeze_patch_embed: backbone {self.hparams.backbone!r} has no patch embedding "
                    "(it applies to ViTs, e.g. vit_tiny_patch16_224); remove the key"
                )
            # frozen before the key encoder is copied from it, so both hold the same random projection
            embed.requires_grad_(False)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim, num_layers=proj_layers, last_bn=True)
        self.predictor = heads.mlp(proj_dim, pred_hidden_dim, proj_dim)
        self.key_backbone = self.momentum_copy(self.backbone)
        self.key_projector = self.momentum_copy(self.projector)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        q1, q2 = (self.gather(self.predictor(self.projector(f))) for f in feats[:2])
        with torch.no_grad():
            k1, k2 = (gather_no_grad(self.key_projector(self.key_backbone(v))) for v in batch["views"][:2])
        temperature = self.hparams.temperature
        return 2 * temperature * (losses.info_nce(q1, k2, temperature) + losses.info_nce(q2, k1, temperature))
