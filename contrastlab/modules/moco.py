"""MoCo v2 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning";
Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning")."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import heads
from contrastlab.modules.core.distributed import gather_no_grad, shuffled_bn_forward
from contrastlab.modules.core.memory import EmbeddingQueue, check_queue_fits_data
from contrastlab.modules.core.momentum import MomentumModule


class MoCoV2(MomentumModule):
    """Queries q = g(f(view 1)); keys k = g'(f'(view 2)) from the momentum encoder (f', g'); InfoNCE of q
    against its key and a queue of past keys; then the step's keys, gathered from every rank, enter the queue.
    The queue starts empty rather than random, so the very first step has no negatives and a loss of 0.

    Args:
        temperature: tau of InfoNCE (0.2 in MoCo v2).
        queue_size: K, the number of negative keys kept; at most the training set's size.
        proj_hidden_dim, proj_dim: MoCo v2's head, Linear-ReLU-Linear (no BatchNorm).
        momentum: of the key encoder, constant by default (final_momentum=None), 0.999 in the paper.
        shuffle_bn: encode keys with shuffled BatchNorm across ranks (see `shuffled_bn_forward`). Turn
            it off under `trainer.sync_batchnorm: true`, where the statistics are global anyway.
        shuffle_bn_splits: also split each rank's shuffled keys into this many BatchNorm groups; on
            one device, 2 or more is what keeps shuffled BN meaningful (MoCo's SplitBatchNorm).
        symmetric: add the loss with the views swapped (both directions each step, and both views' keys
            enqueued), as in MoCo's CIFAR demo; the paper's loss is one direction.
    """

    def __init__(
        self,
        temperature: float = 0.2,
        queue_size: int = 65536,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        momentum: float = 0.999,
        final_momentum: float | None = None,
        shuffle_bn: bool = True,
        shuffle_bn_splits: int = 1,
        symmetric: bool = False,
        **base,
    ):
        if temperature <= 0:
            raise ConfigError(f"model.init_args.temperature must be > 0, got {temperature}")
        if shuffle_bn_splits < 1:
            raise ConfigError(f"model.init_args.shuffle_bn_splits must be >= 1, got {shuffle_bn_splits}")
        super().__init__(momentum=momentum, final_momentum=final_momentum, **base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim, batch_norm=False)
        self.key_backbone = self.momentum_copy(self.backbone)
        self.key_projector = self.momentum_copy(self.projector)
        self.queue = EmbeddingQueue(queue_size, proj_dim)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            check_queue_fits_data(self.hparams.queue_size, self.trainer)

    def key_encoder(self, view: Tensor) -> Tensor:
        return self.key_projector(self.key_backbone(view))

    @torch.no_grad()
    def keys(self, view: Tensor) -> Tensor:
        if self.hparams.shuffle_bn:
            return shuffled_bn_forward(self.key_encoder, view, self.hparams.shuffle_bn_splits)
        return self.key_encoder(view)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        views, temperature = batch["views"], self.hparams.temperature
        negatives = self.queue.contents()
        q1 = self.projector(feats[0])
        k2 = self.keys(views[1])
        loss = losses.queue_info_nce(q1, k2, negatives, temperature)
        new_keys = [k2]
        if self.hparams.symmetric:
            q2, k1 = self.projector(feats[1]), self.keys(views[0])
            loss = (loss + losses.queue_info_nce(q2, k1, negatives, temperature)) / 2
            new_keys.append(k1)
        self.queue.enqueue(gather_no_grad(torch.cat(new_keys)))
        return loss
