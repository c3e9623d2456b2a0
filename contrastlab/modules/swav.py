"""SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import heads, optim
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.core.distributed import all_reduce_sum
from contrastlab.modules.core.memory import EmbeddingQueue, check_queue_fits_data


class SwAV(ContrastiveModule):
    """z = normalise(g(f(view))) for every view, global and local (multi-crop); scores s = z C^T against K
    normalised prototypes C; each global view's codes q = Sinkhorn-Knopp(s) over the global batch (all-reduced
    sums), and every other view predicts them: the swapped prediction `losses.swav_loss`.

    Args:
        num_prototypes: K (3000 on ImageNet), at least proj_dim and better several times it, so that the prototypes
            span the embedding space with no direction in which every score is nearly equal.
        temperature: tau of the predictions' softmax (0.1).
        epsilon, sinkhorn_iterations: Sinkhorn-Knopp's entropy weight (0.05) and iterations (3).
        proj_hidden_dim, proj_dim: the projector g (Linear-BN-ReLU-Linear, 2048 and 128 in the paper).
        queue_size: embeddings of past global views kept on each rank (0: no queue) and scored against the
            current prototypes with the batch, once full, so that small batches still spread over K prototypes.
        freeze_prototypes_epochs: epochs at whose optimiser steps the prototypes do not move (1, as the paper's
            first epoch): the assignments settle before the prototypes chase them.
    """

    multi_crop = True

    def __init__(
        self,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        queue_size: int = 0,
        freeze_prototypes_epochs: int = 1,
        **base,
    ):
        for key, value in (("temperature", temperature), ("epsilon", epsilon)):
            if value <= 0:
                raise ConfigError(f"model.init_args.{key} must be > 0, got {value}")
        for key, value in (("num_prototypes", num_prototypes), ("sinkhorn_iterations", sinkhorn_iterations)):
            if value < 1:
                raise ConfigError(f"model.init_args.{key} must be >= 1, got {value}")
        if num_prototypes < proj_dim:
            # K prototypes span at most K of the proj_dim dimensions: an embedding in the rest scores 0 against
            # every prototype, so its codes and predictions are uniform and the loss is log K from any view. Training
            # finds that subspace (on digits with K=100 < 128, 97% of the embeddings' norm within 4 epochs).
            raise ConfigError(
                f"model.init_args.num_prototypes={num_prototypes} is below proj_dim={proj_dim}: the embeddings "
                "collapse where no prototype reaches (uniform codes, loss log K); give num_prototypes >= proj_dim "
                "(the paper: 3000 for 128), or a smaller proj_dim"
            )
        if queue_size < 0 or freeze_prototypes_epochs < 0:
            raise ConfigError(
                f"model.init_args.queue_size ({queue_size}) and freeze_prototypes_epochs "
                f"({freeze_prototypes_epochs}) must be >= 0"
            )
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)
        self.prototypes = nn.Linear(proj_dim, num_prototypes, bias=False)
        self.global_views = self.view_groups[0].count
        queues = [EmbeddingQueue(queue_size, proj_dim) for _ in range(self.global_views)] if queue_size else []
        self.queues = nn.ModuleList(queues)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.queue_size:
            check_queue_fits_data(self.hparams.queue_size, self.trainer)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        # The prototypes are kept on the unit sphere, so that scores are cosines (the paper normalises them
        # before each step, as here).
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        rows = feats[0].shape[0]
        # one projector pass over every view, as the paper's: its BatchNorm sees all crops together
        z = F.normalize(self.projector(torch.cat(feats)), dim=1)
        views = z.split(rows)
        scores = [self.prototypes(v) for v in views]
        codes = []
        for i in range(self.global_views):
            with torch.no_grad():
                assign = scores[i].detach()
                if self.queues and int(self.queues[i].filled) == self.queues[i].size:
                    assign = torch.cat([self.prototypes(self.queues[i].contents()), assign])
                codes.append(self.sinkhorn(assign)[-rows:])
                if self.queues:
                    self.queues[i].enqueue(views[i])
        return losses.swav_loss(scores, codes, self.hparams.temperature)

    def sinkhorn(self, scores: Tensor) -> Tensor:
        hp = self.hparams
        return losses.sinkhorn_knopp(scores, hp.epsilon, hp.sinkhorn_iterations, reduce=all_reduce_sum)

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.current_epoch < self.hparams.freeze_prototypes_epochs:
            optim.hold_still(self.prototypes)
