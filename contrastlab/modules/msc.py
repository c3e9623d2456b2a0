"""Mean-shifted contrastive learning for one-class anomaly detection (Reiss & Hoshen 2023, AAAI,
"Mean-Shifted Contrastive Loss for Anomaly Detection")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.fabric.utilities import move_data_to_device
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.metrics.anomaly import AnomalyMetrics
from contrastlab.metrics.online import Evaluators
from contrastlab.modules import losses
from contrastlab.modules.core import checks, transfer
from contrastlab.modules.core.base import ContrastiveModule


class MeanShifted(ContrastiveModule):
    """Adapts a pretrained encoder to one normal class (train with `data.init_args.normal_class`):

    1. f starts from `init_from` (a contrastlab checkpoint) or timm's pretrained weights; phi = f / ||f||.
    2. c = the normalised mean of phi over the normal training set, computed once with the initial encoder
       and then fixed (a buffer, so it is saved in checkpoints and survives a resume).
    3. Each step: NT-Xent on the two views' mean-shifted features (phi - c) / ||phi - c||, plus the
       angular center loss -phi . c. Contrasting around c instead of the origin keeps the pretrained
       features' compact normal cluster from being torn apart by the uniformity of a plain contrastive loss.
    4. Anomaly score of x: the mean cosine distance of phi(x) to its k nearest normal training features;
       `val/auroc` and `test/auroc` over all classes, those outside the training split being anomalies.

    Args:
        temperature: tau of the contrastive term (0.25 in the paper).
        angular_weight: weight of the angular center loss (1 in the paper; 0 gives plain MSC).
        init_from: path of a `.ckpt` written by `contrastlab fit` whose backbone weights start the encoder.
        score_k: k of the kNN anomaly score (2 in the paper).
    """

    def __init__(
        self,
        temperature: float = 0.25,
        angular_weight: float = 1.0,
        init_from: str | None = None,
        score_k: int = 2,
        **base,
    ):
        checks.positive("temperature", temperature)
        checks.non_negative("angular_weight", angular_weight)
        checks.positive("score_k", score_k)
        if init_from and base.get("pretrained"):
            raise ConfigError("model.init_args: init_from and pretrained both name starting weights; keep one")
        super().__init__(**base)
        if init_from:
            transfer.load_backbone(self.backbone, init_from)
        self.probe = None  # the training split holds one class: nothing for a linear probe to learn
        self.register_buffer("center", torch.zeros(self.feature_dim))

    def evaluators(self) -> Evaluators:
        """Anomaly AUROC, and the best checkpoint by it: kNN top-1 means nothing with a one-class bank."""
        return Evaluators([AnomalyMetrics(self.hparams.score_k)], "val/auroc", "max")

    @torch.no_grad()
    def on_fit_start(self) -> None:
        if self.center.any():
            return  # resumed: keep the center this run was adapted with
        was_training = self.training
        self.eval()
        phi, labels = [], []
        data = self.trainer.datamodule
        for batch in data.eval_loader(data.bank_split):  # the normal training split, in order
            phi.append(F.normalize(self.embed(move_data_to_device(batch, self.device)), dim=1))
            labels.append(batch["y"])
        self.train(was_training)
        classes = torch.cat(labels).unique()
        if (classes >= 0).sum() > 1:
            raise ConfigError(
                f"data.init_args.normal_class: the training split holds classes {classes.tolist()}; mean-shifted "
                "anomaly detection trains on one normal class: set data.init_args.normal_class to it"
            )
        self.center.copy_(F.normalize(torch.cat(phi).mean(dim=0), dim=0))

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        f1, f2 = (self.gather(f) for f in feats[:2])
        hp = self.hparams
        return losses.mean_shifted_contrastive(f1, f2, self.center, hp.temperature, hp.angular_weight)
