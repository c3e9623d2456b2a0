"""SupCon (Khosla et al. 2020, "Supervised Contrastive Learning")."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks, heads
from contrastlab.modules.core.base import ContrastiveModule


class SupCon(ContrastiveModule):
    """V views of each sample; z = g(f(view)); the positives of an anchor are all views of all samples of its
    class in the global batch (labels gathered with the embeddings), the rest are negatives.

    Unlabelled samples (y = -1) in a partly labelled set keep only their own views as positives (NT-Xent).

    Positives may come from metadata instead of classes: `positives_key: group` makes every sample of the
    anchor's group (same patient, same speaker, same subject under another MR sequence) a positive, with
    no class labels at all; with `margin` > 0 this is the additive-margin loss of speaker embeddings.

    Args:
        temperature: tau of the loss (0.1 in the paper).
        margin: additive margin on the positive cosines (0 = plain SupCon).
        proj_hidden_dim, proj_dim: the projector MLP g.
        positives_key: the sample key whose equal values are positives (`y`: classes; `group`, ...: any
            integer key the data gives, -1 meaning unknown).
    """

    supports_grad_cache = True

    def __init__(
        self,
        temperature: float = 0.1,
        margin: float = 0.0,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        positives_key: str = "y",
        **base,
    ):
        checks.positive("temperature", temperature)
        checks.margin(margin)
        super().__init__(**base)
        if positives_key == "y" and self.data_info.num_classes == 0:
            raise ConfigError(
                f"model: SupCon needs labels, but data {self.data_info.name!r} has no classes; "
                "use a labelled dataset, or a self-supervised method such as SimCLR"
            )
        self.projector = heads.mlp(self.feature_dim, proj_hidden_dim, proj_dim)

    def on_fit_start(self) -> None:
        if self.trainer.datamodule is None:
            return
        train = self.trainer.datamodule.split("train")
        key = self.hparams.positives_key
        if key != "y":
            keys = list(train[0]) if len(train) else []
            if key not in keys:
                raise ConfigError(
                    f"model.init_args.positives_key: samples of {self.data_info.name!r} carry no {key!r} "
                    f"(they carry {', '.join(keys)}); name one of those, or y for class labels"
                )
            return
        # num_classes > 0 says the data *can* carry labels; check the training split really does.
        labels = _labels_of(train)
        if labels is not None and not (labels >= 0).any():
            raise ConfigError(
                f"model: SupCon needs labels, but every training sample of {self.data_info.name!r} is "
                "unlabelled (y = -1); use a labelled split, or a self-supervised method such as SimCLR"
            )

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z = [self.gather(self.projector(f)) for f in feats]
        labels = self.gather(batch[self.hparams.positives_key])
        return losses.supcon(z, labels, self.hparams.temperature, self.hparams.margin, self.loss_block_rows)


def _labels_of(dataset) -> Tensor | None:
    """The labels of an in-memory (`y`) or file (`labels`) dataset, None when it does not expose them."""
    labels = getattr(dataset, "y", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    return None if labels is None else torch.as_tensor(labels)
