"""TS2Vec (Yue et al. 2022, "TS2Vec: Towards Universal Representation of Time Series")."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.nets.ts2vec import masked_max_pool


class TS2Vec(ContrastiveModule):
    """Two random crops of each series that share a segment; the encoder (with timestamp masking) gives
    timestamp-level representations of each crop in its own context, and the hierarchical contrastive loss
    compares them on the shared segment: instance-wise and temporal contrast at every max-pooled scale.

    The crops are the view pipeline's (`SeriesViews` with `crop: true`), which says where they overlap
    (`overlap_start`, `overlap_length` batch keys); padding and missing steps are NaN in the views and the
    encoder leaves them out. Negatives are the batch's own (per device). Features for kNN, the probe and
    the SVM are the timestamp representations of the whole series, max-pooled over its valid steps.

    Args:
        instance_weight: weight of the instance-wise term against the temporal one (TS2Vec's alpha, 0.5).
        temporal_unit: the first scale with temporal contrast (0: every scale).
        backbone: TS2Vec's dilated encoder (`ts2vec`) unless the config names another.
    """

    def __init__(self, instance_weight: float = 0.5, temporal_unit: int = 0, backbone: str = "ts2vec", **base):
        checks.fraction("instance_weight", instance_weight)
        checks.non_negative("temporal_unit", temporal_unit)
        super().__init__(backbone=backbone, **base)
        checks.sequence_backbone(self)

    def encode(self, batch: Batch, views: list[Tensor]) -> list[Tensor]:
        mask = batch.get("mask")
        if not self.training:
            return [self.backbone(v, _same_length(mask, v)) for v in views]
        if "overlap_start" not in batch:
            raise ConfigError(
                f"model.augment: {type(self).__name__} compares two overlapping crops; use "
                "contrastlab.augment.series.SeriesViews with crop: true (configs/ts2vec/ucr.yaml)"
            )
        (h1, valid1), (h2, valid2) = (self.backbone.sequence(v) for v in views[:2])
        # crops drawn per sample may overlap by different lengths: compare the shortest overlap's steps
        length = int(batch["overlap_length"].min())
        starts = batch["overlap_start"]
        batch["overlap"] = (steps_from(h1, starts[:, 0], length), steps_from(h2, starts[:, 1], length))
        return [masked_max_pool(h1, valid1), masked_max_pool(h2, valid2)]

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = batch["overlap"]
        hp = self.hparams
        return losses.hierarchical_contrastive(z1, z2, hp.instance_weight, hp.temporal_unit)


def _same_length(mask: Tensor | None, view: Tensor) -> Tensor | None:
    """The batch's padding mask when the view keeps the batch's time axis, else None."""
    return mask if mask is not None and mask.shape[-1] == view.shape[-1] else None


def steps_from(h: Tensor, start: Tensor, length: int) -> Tensor:
    """h[b, start_b : start_b + length] of (B, T, D) representations, for each row b."""
    index = start[:, None] + torch.arange(length, device=h.device)
    return h.gather(1, index[..., None].expand(-1, -1, h.shape[-1]))
