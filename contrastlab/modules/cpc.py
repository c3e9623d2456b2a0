"""CPC (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding")."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.core.distributed import gather_no_grad, world_size


class CPC(ContrastiveModule):
    """One view per sequence; z_t = g_enc(x), c_t = g_ar(z_1..z_t); W_k c_t predicts z_{t+k} for k = 1..K,
    scored by InfoNCE against the latents of other steps and sequences (`losses.cpc_terms`).

    The backbone must give step-level outputs (`steps(x, mask)` -> z, c, mask, like the registered `cpc`
    encoder); its pooled output is the representation kNN and the probe read. Padded batches (`mask`
    from `pad_collate`) are handled: padded steps are neither predicted nor negatives.

    Args:
        prediction_steps: K, how many steps ahead to predict (12 in the paper's audio experiments).
        negatives: "batch" (the same future step of the other sequences), "sequence" (the other steps of
            the same sequence) or "both" (every step of the global batch).
    """

    def __init__(self, prediction_steps: int = 12, negatives: str = "both", backbone: str = "cpc", **base):
        if prediction_steps < 1:
            raise ConfigError(f"model.init_args.prediction_steps must be >= 1, got {prediction_steps}")
        if negatives not in losses.CPC_NEGATIVES:
            raise ConfigError(
                f"model.init_args.negatives must be one of {', '.join(losses.CPC_NEGATIVES)}, got {negatives!r}"
            )
        super().__init__(backbone=backbone, **base)
        if not callable(getattr(self.backbone, "steps", None)):
            raise ConfigError(
                f"model.backbone: CPC needs an encoder with step-level outputs (steps(x, mask) -> z, c, mask), "
                f"such as cpc; {backbone!r} has none"
            )
        views = self.augment.view_info(self.data_info) if hasattr(self.augment, "view_info") else self.data_info
        length = views.shape[-1]  # of the training views (0: varies)
        if length and self.backbone.num_steps(length) < 2:
            raise ConfigError(
                f"model.backbone_kwargs.strides: views of {length} samples give {self.backbone.num_steps(length)} "
                "step(s) with these strides, and CPC needs at least 2 to predict one; use smaller strides"
            )
        # W_1..W_K as one linear map, bias-free as in the paper: c_t -> K predicted latents
        self.predictor = nn.Linear(self.backbone.context_dim, prediction_steps * self.backbone.latent_dim, bias=False)

    def encode(self, batch: Batch, views: list[Tensor]) -> list[Tensor]:
        """The pooled representation of each view; the step-level z_t and c_t go to `batch["steps"]`."""
        mask = batch.get("mask")
        if mask is not None and any(v.shape[-1] != mask.shape[-1] for v in views):
            raise ConfigError(
                "model.augment: the views of this padded batch changed its length, so its mask no longer "
                "fits; do not crop variable-length data"
            )
        batch["steps"] = [self.backbone.steps(v, mask) for v in views]
        return [self.backbone.pooled(s) for s in batch["steps"]]

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z, c, mask = batch["steps"][0]
        b, s, d = z.shape
        predictions = self.predictor(c).view(b, s, self.hparams.prediction_steps, d).transpose(1, 2)
        if self.hparams.negatives != "sequence":  # negatives from the global batch
            predictions, z, mask = self._gathered(predictions, z, mask)
        loss_k, accuracy_k, anchors_k = losses.cpc_terms(predictions, z, mask, self.hparams.negatives)
        if not (anchors_k > 0).any():
            raise ConfigError(
                f"model.backbone_kwargs.strides: the views give {s} step(s), too few to predict one step "
                "ahead; use longer inputs (model.augment.crop) or smaller strides"
            )
        scored = anchors_k > 0
        self.log("train/cpc_accuracy", accuracy_k[scored].mean(), on_step=True, on_epoch=True, batch_size=b)
        self.log("train/cpc_accuracy_k1", accuracy_k[0], on_step=False, on_epoch=True, batch_size=b)
        return loss_k[scored].mean()

    def _gathered(self, predictions: Tensor, z: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every rank's predictions, latents and mask, padded to the longest steps of any rank."""
        if world_size() == 1:
            return predictions, z, mask
        s = torch.tensor(z.shape[1], device=z.device)
        dist.all_reduce(s, op=dist.ReduceOp.MAX)
        pad = int(s) - z.shape[1]
        if mask is None:
            mask = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        predictions, z = F.pad(predictions, (0, 0, 0, pad)), F.pad(z, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad), value=False)
        return self.gather(predictions), self.gather(z), gather_no_grad(mask)
