"""G-SimCLR (Chakraborty et al. 2020, "G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection via
Pseudo Labelling")."""

from __future__ import annotations

from torch import Tensor

from contrastlab.contract import INDEX, Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.core.clusters import PseudoLabels
from contrastlab.modules.core.distributed import gather_no_grad


class GSimCLR(ContrastiveModule):
    """SimCLR whose negatives leave out the anchor's cluster: k-means pseudo-labels of the training set keep likely
    same-class samples from being pushed apart (`losses.guided_nt_xent`).

    The paper clusters a denoising autoencoder's codes once, before training; here the clusters are of the
    method's own projections z of view 1, kept for every sample (by its dataset index, `idx`) as the epochs pass
    and clustered by spherical k-means every `refresh_every` epochs, so the first `refresh_every` epochs are
    plain SimCLR. Bank and pseudo-labels are gathered from every rank, clustered on rank 0 and broadcast, and
    saved in checkpoints (`modules/core/clusters.py`).

    Args:
        temperature: tau of NT-Xent.
        num_clusters: k of k-means (the paper: the number of classes, 10 on CIFAR-10).
        refresh_every: epochs between clusterings.
        proj_hidden_dim, proj_dim: the projector MLP g.
    """

    def __init__(
        self,
        temperature: float = 0.2,
        num_clusters: int = 10,
        refresh_every: int = 1,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        **base,
    ):
        checks.positive("temperature", temperature)
        if num_clusters < 2:
            raise ConfigError(f"model.init_args.num_clusters must be >= 2, got {num_clusters}")
        if refresh_every < 1:
            raise ConfigError(f"model.init_args.refresh_every must be >= 1 (epochs), got {refresh_every}")
        super().__init__(**base)
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)
        self.pseudo_labels = PseudoLabels(proj_dim)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage != "fit" or datamodule is None or not hasattr(datamodule, "split"):
            return
        train_size = len(datamodule.split("train"))
        if self.hparams.num_clusters > train_size:
            raise ConfigError(
                f"model.init_args.num_clusters={self.hparams.num_clusters} is more than the {train_size} training "
                f"samples of {datamodule.info.name}; set at most {train_size}"
            )

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        if INDEX not in batch:
            raise ConfigError("data: G-SimCLR needs each sample's dataset index (batch key 'idx'); this data has none")
        z1, z2 = (self.gather(self.projector(f)) for f in feats[:2])
        index = gather_no_grad(batch[INDEX])
        clusters = self.pseudo_labels.of(index)
        loss = losses.guided_nt_xent(z1, z2, clusters, self.hparams.temperature)
        self.pseudo_labels.record(index, z1)
        return loss

    def on_train_epoch_end(self) -> None:
        if (self.current_epoch + 1) % self.hparams.refresh_every == 0:
            clustered = self.pseudo_labels.refresh(self.hparams.num_clusters, seed=self.current_epoch)
            self.log("train/clustered", float(clustered), on_epoch=True, rank_zero_only=True)
