"""ContrastiveModule: what every method shares, so that a method file holds only its algorithm.

It owns the backbone, the view pipeline (run in `on_after_batch_transfer`, on the batch's device; the
pipeline normalises), the optimiser and schedule, the online linear probe (trained on detached features,
so it never changes the encoder) and cross-rank gathering. A method subclasses it and implements
`contrastive_loss(feats, batch)`. Hooks a method may override:

- `encode(batch, views)`: features of each view. The default applies the one backbone to every view;
  a two-tower method or a mask-aware encoder (padded series: `batch["mask"]`) overrides it. Training,
  validation, test, predict, `forward` and `embed` all go through it.
- `evaluators()`: the metric callbacks of validation/test and the metric the best checkpoint is chosen by.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab import compat
from contrastlab.contract import (
    EVAL_VIEW,
    INDEX,
    LABEL,
    QUERY_LOADER,
    SAMPLE,
    VIEWS,
    Batch,
    DataInfo,
    check_pipeline,
    default_views,
    describe_groups,
    multi_size,
    view_groups,
)
from contrastlab.errors import ConfigError
from contrastlab.metrics.multilabel import MultiLabelMetrics
from contrastlab.metrics.online import EmbeddingMetrics, Evaluators, loader_name
from contrastlab.modules.core import optim, speed
from contrastlab.modules.core.backbones import create_backbone
from contrastlab.modules.core.distributed import gather_with_grad

# Checkpoints keep these in their hyper-parameters, pickled by class path; Lightning and contrastlab load checkpoints
# with weights_only=True, which unpickles only the classes allowed here. Checkpoints written before the classes moved
# name them by their old paths, allowed too so that those checkpoints still load (no module remains at those paths).
torch.serialization.add_safe_globals(
    [
        DataInfo,
        optim.OptimizerConfig,
        (DataInfo, "contrastlab.datamodules.base.DataInfo"),
        (optim.OptimizerConfig, "contrastlab.modules.optim.OptimizerConfig"),
    ]
)


class ContrastiveModule(L.LightningModule):
    """Base of every method.

    Args:
        backbone: a registered name (`small_cnn`, a 1-D or 3-D net) or, for images, a timm model name;
            see `modules/core/backbones.py`.
        backbone_kwargs: the backbone's constructor arguments (`cifar_stem: true` for ResNets on 32 px).
        pretrained: load timm's pretrained weights (needs network access).
        augment: the view pipeline (a `ViewPipeline`); by default the one the data proposes (`DataInfo.views`).
        optimizer: optimiser and schedule, see `OptimizerConfig`.
        probe_lr: learning rate of the online linear probe (defaults to optimizer.lr).
        knn_k, knn_temperature: the weighted kNN evaluation.
        data_info: what the data is (shape, classes, statistics); the CLI links it from the DataModule.
        grad_cache_chunk: encode each view in chunks of this many samples with GradCache (`modules/core/gradcache.py`):
            the full batch's gradients in about one chunk's activation memory; 0 (default) is off. Methods whose
            loss is over in-batch negatives set `supports_grad_cache`.
        channels_last, compile_backbone: speed options of the backbone (`modules/core/speed.py`); channels_last
            null (the default) turns it on for nets of 2-D convolutions over images, where it is faster.

    A method whose loss takes views of several sizes (multi-crop's global and local crops, `ViewGroup`) sets
    `multi_crop`; every other method refuses such a pipeline, so multi-crop changes nothing for them.
    """

    supports_grad_cache = False
    multi_crop = False

    def __init__(
        self,
        backbone: str = "resnet18",
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        augment: nn.Module | None = None,
        optimizer: optim.OptimizerConfig | None = None,
        probe_lr: float | None = None,
        knn_k: int = 20,
        knn_temperature: float = 0.07,
        data_info: DataInfo | None = None,
        grad_cache_chunk: int = 0,
        channels_last: bool | None = None,
        compile_backbone: bool = False,
    ):
        super().__init__()
        if data_info is None:
            raise ConfigError("model.data_info is missing: the CLI links it from `data`; in Python pass data.info")
        # logger=False: the CLI logs the whole config as params, not just the model's arguments.
        self.save_hyperparameters(ignore=["augment"], logger=False)
        self.data_info = data_info
        self.optimizer_config = optimizer or optim.OptimizerConfig()
        if augment is None:
            augment = default_views(data_info)
        else:
            check_pipeline(augment)
            if hasattr(augment, "bind"):
                augment.bind(data_info)
        self.augment = augment
        self.view_groups = view_groups(augment, data_info)
        speed.check_grad_cache(type(self), grad_cache_chunk, self.view_groups)
        if multi_size(self.view_groups) and not self.multi_crop:
            raise ConfigError(
                f"model.augment: {type(self).__name__} takes views of one size, but the pipeline makes "
                f"{describe_groups(self.view_groups)}; remove local_crops, or use a multi-crop method (SwAV, DINO)"
            )
        # The backbone reads the views, whose shape the pipeline may change (a waveform's log-mel spectrogram).
        view_info = augment.view_info(data_info) if hasattr(augment, "view_info") else data_info
        self.backbone = create_backbone(
            backbone,
            view_info,
            pretrained=pretrained,
            view_shapes=[g.shape for g in self.view_groups],
            **(backbone_kwargs or {}),
        )
        self.feature_dim: int = self.backbone.num_features
        if channels_last is None:
            channels_last = speed.wants_channels_last(self.backbone, tuple(view_info.shape))
        self.channels_last: bool = channels_last  # what the run's `channels_last` tag records
        speed.apply(self.backbone, channels_last=channels_last)
        self.probe = nn.Linear(self.feature_dim, data_info.num_classes) if data_info.num_classes > 0 else None

    def configure_model(self) -> None:
        if self.hparams.compile_backbone:
            speed.compile_once(self.backbone)

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        """The method's loss from the features of each view (`batch["views"]` holds the views)."""
        raise NotImplementedError

    # -- hooks a method may override -------------------------------------------------------------------

    def encode(self, batch: Batch, views: list[Tensor]) -> list[Tensor]:
        """Features (B, feature_dim) of each view of `batch`; the batch carries what else an encoder needs."""
        return [self.backbone(v) for v in views]

    def evaluators(self) -> Evaluators:
        """The callbacks that compute validation/test metrics, and the metric to keep the best checkpoint by.

        Single-label data: kNN top-1 (with probe accuracy, alignment, uniformity, effective rank);
        multi-label data: kNN mAP and AUROC; unlabelled data: the label-free statistics, and the training loss.
        """
        info, hp = self.data_info, self.hparams
        knn = {"knn_k": hp.knn_k, "knn_temperature": hp.knn_temperature}
        if info.multilabel:
            return Evaluators([MultiLabelMetrics(info.num_classes, **knn)], "val/map", "max")
        metrics = EmbeddingMetrics(info.num_classes, **knn)
        if info.num_classes > 0:
            return Evaluators([metrics], "val/knn_top1", "max")
        return Evaluators([metrics], "train/loss_epoch", "min")

    def configure_callbacks(self) -> list[L.Callback]:
        callbacks = self.evaluators().callbacks
        trainer = compat.attached_trainer(self)
        kinds = {type(c) for c in callbacks}
        if trainer is not None and any(type(c) in kinds for c in trainer.callbacks):
            return []  # already attached by an earlier fit/test on this trainer
        return callbacks

    # -- data on the device -------------------------------------------------------------------------

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        x = batch[SAMPLE]
        if self.trainer.training:
            # a pipeline may add more than the views (where crops overlap, ...): its `augment_batch`
            augment_batch = getattr(self.augment, "augment_batch", None)
            batch.update(augment_batch(batch) if augment_batch is not None else {VIEWS: self.augment(x)})
            return batch
        batch[EVAL_VIEW] = self.augment.eval_view(x)
        predicting = getattr(self.trainer, "predicting", False)
        if not predicting and self.augment.num_views >= 2 and loader_name(self.trainer, dataloader_idx) == QUERY_LOADER:
            batch[VIEWS] = self.augment(x)[:2]
        return batch

    def gather(self, x: Tensor) -> Tensor:
        """x from every rank, concatenated in rank order, with gradients flowing back to each rank's part."""
        return gather_with_grad(x)

    @property
    def loss_block_rows(self) -> int | None:
        """Anchors per block for a loss over in-batch negatives (`losses.nt_xent(..., block_rows)`): GradCache's
        chunk, so that the loss's similarity matrix, like the encoder, is held one chunk at a time."""
        return self.hparams.grad_cache_chunk or None

    # -- steps ----------------------------------------------------------------------------------------

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.hparams.grad_cache_chunk:
            loss, feats = speed.grad_cache_loss(self, batch)
        else:
            feats = self.encode(batch, batch[VIEWS])
            loss = self.contrastive_loss(feats, batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        if self.probe is not None:
            probe_loss = self._probe_loss(self.probe(feats[0].detach()), batch[LABEL])
            self.log("train/probe_loss", probe_loss, on_step=True, on_epoch=True)
            loss = loss + probe_loss
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def _probe_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        # Masked rather than skipped when a batch has no labels, so every rank's probe gets a
        # (zero) gradient and DDP's gradient reduction stays in step.
        if self.data_info.multilabel:
            labelled = (y >= 0).all(dim=1).float()
            per_sample = F.binary_cross_entropy_with_logits(
                logits, y.clamp(min=0).to(logits.dtype), reduction="none"
            ).mean(dim=1)
        else:
            labelled = (y >= 0).float()
            per_sample = F.cross_entropy(logits, y.clamp(min=0), reduction="none")
        return (per_sample * labelled).sum() / labelled.sum().clamp(min=1)

    def _eval_step(self, batch: Batch, dataloader_idx: int) -> dict[str, Tensor]:
        feats = self.encode(batch, [batch[EVAL_VIEW]])[0]
        out = {"features": feats, LABEL: batch[LABEL]}
        if loader_name(self.trainer, dataloader_idx) == QUERY_LOADER:
            if self.probe is not None:
                out["probe_logits"] = self.probe(feats)
            if VIEWS in batch:
                out["view1"], out["view2"] = self.encode(batch, batch[VIEWS])
        return out

    def forward(self, view: Tensor, batch: Batch | None = None) -> Tensor:
        """Features of one (normalised) view: the representation being learned."""
        return self.encode(batch if batch is not None else {}, [view])[0]

    def embed(self, batch: Batch) -> Tensor:
        """Features (B, feature_dim) of a raw batch already on the model's device: its deterministic eval
        view (normalised by the pipeline) through `encode`. Call `model.eval()` first for inference."""
        return self.encode(batch, [self.augment.eval_view(batch[SAMPLE])])[0]

    def project(self, features: Tensor) -> Tensor:
        """The projector's output (B, proj_dim) for `embed`'s features: the space the loss compares, which keeps less
        of what the views vary than the backbone's (a speaker, where the views vary the speaker). Methods whose
        loss reads no `projector` refuse in one line."""
        projector = getattr(self, "projector", None)
        if not isinstance(projector, nn.Module):
            raise ConfigError(
                f"{type(self).__name__} has no projector to read features after; evaluate its backbone's features"
            )
        return projector(features)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        features = self.encode(batch, [batch[EVAL_VIEW]])[0]
        return {"features": features, LABEL: batch[LABEL], INDEX: batch[INDEX]}

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return self._eval_step(batch, dataloader_idx)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return self._eval_step(batch, dataloader_idx)

    # -- optimisation ---------------------------------------------------------------------------------

    def configure_optimizers(self):
        cfg = self.optimizer_config
        global_batch = self.trainer.world_size * self.trainer.accumulate_grad_batches * self._train_batch_size()
        lr = cfg.peak_lr(global_batch)
        predictor = self._separately_stepped_predictor()
        exclude = [m for m in (self.probe, predictor) if m is not None]
        groups = optim.param_groups(self, cfg.weight_decay, exclude=exclude)
        if predictor is not None:
            groups += [
                {**group, "lr": lr * cfg.predictor_lr_ratio}
                for group in optim.param_groups(predictor, cfg.weight_decay)
            ]
        if self.probe is not None:
            groups.append(
                {
                    "params": list(self.probe.parameters()),
                    "weight_decay": 0.0,
                    "lars_exclude": True,
                    "lr": self.hparams.probe_lr or lr,
                }
            )
        optimizer = optim.build_optimizer(cfg, groups, lr)
        stepping = self.trainer.estimated_stepping_batches
        if math.isinf(stepping):
            raise ConfigError(
                "the fit has no end (trainer.max_epochs=-1 and trainer.max_steps=-1, or a loader without a length), "
                "but the learning rate's cosine schedule needs its length: give trainer.max_steps or trainer.max_epochs"
            )
        total = max(1, int(stepping))
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = int(cfg.warmup_epochs * total / epochs)
        schedule = optim.warmup_cosine(total, warmup, cfg.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _separately_stepped_predictor(self) -> nn.Module | None:
        """The predictor, when `optimizer.predictor_lr_ratio` gives it its own learning rate."""
        ratio = self.optimizer_config.predictor_lr_ratio
        if ratio == 1:
            return None
        predictor = getattr(self, "predictor", None)
        if predictor is None or not any(p.requires_grad for p in predictor.parameters()):
            raise ConfigError(
                f"model.optimizer.predictor_lr_ratio={ratio}: {type(self).__name__} has no trained predictor; "
                "remove the key (it applies to BYOL, SimSiam with predictor mlp, MoCo v3 and NNCLR)"
            )
        return predictor

    def _train_batch_size(self) -> int:
        datamodule = getattr(self.trainer, "datamodule", None)
        return getattr(datamodule, "batch_size", 256)
