"""TS2Vec (Yue et al. 2022, "TS2Vec: Towards Universal Representation of Time Series")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.errors import ConfigError
from contrastlab.modules import series_losses
from contrastlab.modules.base import Batch, ContrastiveModule
from contrastlab.modules.nets.ts2vec import masked_max_pool
from contrastlab.modules.series_crops import overlapping_crops


class TS2Vec(ContrastiveModule):
    """Two random crops of each series that share a segment; the encoder (with timestamp masking) gives
    timestamp-level representations of each crop in its own context, and the hierarchical contrastive loss
    compares them on the shared segment: instance-wise and temporal contrast at every max-pooled scale.

    The view pipeline normalises (and may augment) the series; the crops are drawn here from its first and
    last view, so the overlap is known. Negatives are the batch's own (per device: each device draws its
    own crop lengths). Features for kNN, the probe and the SVM are the timestamp representations of the
    whole series, max-pooled over its valid steps.

    Args:
        instance_weight: weight of the instance-wise term against the temporal one (TS2Vec's alpha, 0.5).
        temporal_unit: the first scale with temporal contrast (0: every scale).
    """

    def __init__(self, instance_weight: float = 0.5, temporal_unit: int = 0, **base):
        if not 0 <= instance_weight <= 1:
            raise ConfigError(f"model.init_args.instance_weight must be in [0, 1], got {instance_weight}")
        if temporal_unit < 0:
            raise ConfigError(f"model.init_args.temporal_unit must be >= 0, got {temporal_unit}")
        base.setdefault("backbone", "ts2vec")
        super().__init__(**base)
        if not hasattr(self.backbone, "sequence"):
            raise ConfigError(
                f"model.backbone: {type(self).__name__} needs timestamp-level representations; "
                f"{self.hparams.backbone!r} has no `sequence(x, mask)`: use ts2vec or tstcc_cnn"
            )

    def encode(self, batch: Batch, views: list[Tensor]) -> list[Tensor]:
        mask = batch.get("mask")
        if not self.training:
            return [self.backbone(v, _same_length(mask, v)) for v in views]
        crops = overlapping_crops(views[0], views[-1], mask, min_overlap=2 ** (self.hparams.temporal_unit + 1))
        h1, valid1 = self.backbone.sequence(crops.first, crops.first_mask)
        h2, valid2 = self.backbone.sequence(crops.second, crops.second_mask)
        batch["overlap"] = (h1[:, -crops.overlap :], h2[:, : crops.overlap])
        return [masked_max_pool(h1, valid1), masked_max_pool(h2, valid2)]

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = batch["overlap"]
        hp = self.hparams
        return series_losses.hierarchical_contrastive(z1, z2, hp.instance_weight, hp.temporal_unit)


def _same_length(mask: Tensor | None, view: Tensor) -> Tensor | None:
    """The batch's padding mask when the view keeps the batch's time axis, else None."""
    return mask if mask is not None and mask.shape[-1] == view.shape[-1] else None
