"""SoftCLT (Lee, Park & Lee 2024, "Soft Contrastive Learning for Time Series"), on TS2Vec."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.metrics import dtw
from contrastlab.modules import losses
from contrastlab.modules.core import checks
from contrastlab.modules.ts2vec import TS2Vec

log = logging.getLogger(__name__)


class SoftCLT(TS2Vec):
    """TS2Vec's crops, encoder and hierarchical loss, with soft targets instead of one-hot ones:

    - instance-wise: series i and j of the batch are positives to the degree
      w_I(i, j) = 2 alpha sigmoid(-tau_inst D_ij), D the training set's DTW distances scaled to [0, 1]
      (computed once per dataset with aeon and cached on disk by content; batches index it by `idx`);
    - temporal: timestamps t and t' to the degree w_T(t, t') = 2 sigmoid(-tau_temp |t - t'|), at scale d
      of the pooling pyramid with tau_temp * 2^d.

    tau_inst = 0 (or tau_temp = 0) keeps TS2Vec's hard targets for that term; with both 0 this is TS2Vec.

    Args:
        tau_inst, tau_temp: the sharpness of the soft instance and temporal targets (>= 0).
        alpha: the largest weight another series can get (at DTW distance 0), in [0, 1].
        dtw_cache_dir: folder of the cached DTW matrices (default `$XDG_CACHE_HOME/contrastlab/dtw`).
        instance_weight, temporal_unit: as TS2Vec (instance_weight is SoftCLT's lambda).
    """

    def __init__(
        self,
        tau_inst: float = 1.0,
        tau_temp: float = 1.0,
        alpha: float = 0.5,
        dtw_cache_dir: str | None = None,
        **ts2vec,
    ):
        checks.non_negative("tau_inst", tau_inst, "0 keeps hard instance targets")
        checks.non_negative("tau_temp", tau_temp, "0 keeps hard temporal targets")
        if not 0 <= alpha <= 1:
            raise ConfigError(f"model.init_args.alpha must be in [0, 1], got {alpha}")
        super().__init__(**ts2vec)
        # soft instance targets of the training set and the row of each sample `idx`; set at fit start
        self.register_buffer("instance_targets", torch.zeros(0, 0), persistent=False)
        self.register_buffer("row_of_idx", torch.zeros(0, dtype=torch.long), persistent=False)

    def on_fit_start(self) -> None:
        if self.hparams.tau_inst == 0:
            return
        datamodule = self.trainer.datamodule
        train = datamodule.split("train")
        ids = torch.tensor([int(train[i]["idx"]) for i in range(len(train))])
        strategy = self.trainer.strategy
        if strategy.global_rank != 0:
            strategy.barrier()  # rank 0 computes and caches the matrix; the others then read it
        matrix, path, cached = dtw.cached_dtw(dtw.series_of(train), self.hparams.dtw_cache_dir)
        if strategy.global_rank == 0:
            strategy.barrier()
            log.info("SoftCLT: DTW matrix of %d series %s %s", len(ids), "read from" if cached else "cached in", path)
        distances = losses.normalise_distances(torch.from_numpy(matrix))
        targets = losses.soft_instance_targets(distances, self.hparams.tau_inst, self.hparams.alpha)
        self.instance_targets = targets.float().to(self.device)
        row_of_idx = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long)
        row_of_idx[ids] = torch.arange(len(ids))
        self.row_of_idx = row_of_idx.to(self.device)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z1, z2 = batch["overlap"]
        hp = self.hparams
        targets = None
        if hp.tau_inst > 0:
            rows = self.row_of_idx[batch["idx"]]
            targets = self.instance_targets[rows][:, rows]
        return losses.hierarchical_contrastive(
            z1, z2, hp.instance_weight, hp.temporal_unit, instance_targets=targets, tau_temp=hp.tau_temp
        )
