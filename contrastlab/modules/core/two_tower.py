"""What two-tower (paired) methods share: a text tower beside the sample's backbone, through the `encode` hook.

The sample side is the base class's backbone and view pipeline (an image, an audio clip, a volume: whatever
the data is); the text side is `modules/nets/text.py`'s tower over the tokens the DataModule's collate made.
`encode(batch, views)` returns the backbone's features of each view and, when the batch carries text, the
text tower's features last, so the online probe, `embed`, `predict` and `contrastlab eval` keep reading the
sample's features (`feats[0]`). A method adds its projection heads and loss. When the data tokenises each
sentence (`PairedCSV(sentences=True)`), training reads one random sentence of each text (ConVIRT's text view).

Evaluation: kNN top-1 and the probe on the sample's features; image-to-text and text-to-image Recall@K
between the joint-space embeddings of the query split (`RetrievalMetrics`, monitored: `val/recall_at_1`);
zero-shot classification from class prompts (`ZeroShotMetrics`) when the data names its classes.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from contrastlab.augment.text import random_sentence
from contrastlab.contract import QUERY_LOADER, Batch
from contrastlab.errors import CheckpointError
from contrastlab.metrics.online import Evaluators, loader_name
from contrastlab.metrics.retrieval import RetrievalMetrics
from contrastlab.metrics.zeroshot import DEFAULT_TEMPLATES, ZeroShotMetrics
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.nets.text import create_text_tower

TEXT_KEYS = ("input_ids", "attention_mask")


class TwoTowerModule(ContrastiveModule):
    """Base of paired methods. Subclasses set `sample_projector` and `text_projector` and write `contrastive_loss`.

    Args:
        text_tower: the small transformer's size when no `text_model` is given: `width`, `layers`, `heads`,
            `mlp_ratio`, `dropout` (see `TextTransformer`).
        text_model: a local Hugging Face model folder for the text side (data.tokenizer names the same folder).
        zero_shot_templates: prompts with `{label}` for zero-shot classification (averaged per class).
        **base: ContrastiveModule's arguments (backbone, augment, optimizer, ...) for the sample side.
    """

    supports_grad_cache = True  # in-batch negatives, both towers encoded in chunks (grad_cache_towers)
    sample_projector: nn.Module
    text_projector: nn.Module

    def __init__(
        self,
        text_tower: dict[str, Any] | None = None,
        text_model: str | None = None,
        zero_shot_templates: list[str] | None = None,
        **base,
    ):
        super().__init__(**base)
        self.text_tower = create_text_tower(self.data_info.extra.get("text"), text_model, **(text_tower or {}))
        self.text_feature_dim: int = self.text_tower.num_features
        self.zero_shot_templates = list(zero_shot_templates or DEFAULT_TEMPLATES)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.trainer.training and "sentence_of" in batch:  # the text's view: one random sentence
            batch.update(random_sentence(batch["sentence_ids"], batch["sentence_mask"], batch["sentence_of"]))
        return batch

    def encode(self, batch: Batch, views: list[Tensor]) -> list[Tensor]:
        feats = [self.backbone(v) for v in views]
        if "input_ids" in batch:
            feats.append(self.text_tower(batch["input_ids"], batch["attention_mask"]))
        return feats

    def grad_cache_towers(self, batch: Batch) -> tuple[list[nn.Module], list[Tensor | dict[str, Tensor]]]:
        """GradCache's encoders and their inputs (`modules/core/gradcache.py`): the backbone on the first view, the
        text tower on the tokens; the loss sees both full batches, so a batch far past memory trains in chunks."""
        tokens = {key: batch[key] for key in TEXT_KEYS}
        return [self.backbone, self.text_tower], [batch["views"][0], tokens]

    def joint(self, sample_feats: Tensor, text_feats: Tensor) -> tuple[Tensor, Tensor]:
        """Both sides in the joint space (not normalised: the loss and the metrics normalise)."""
        return self.sample_projector(sample_feats), self.text_projector(text_feats)

    def embed_text(self, tokens: dict[str, Tensor]) -> Tensor:
        """Joint-space embeddings of tokenised texts (class prompts for zero-shot classification)."""
        return self.text_projector(self.text_tower(tokens["input_ids"], tokens["attention_mask"]))

    def _eval_step(self, batch: Batch, dataloader_idx: int) -> dict[str, Tensor]:
        if loader_name(self.trainer, dataloader_idx) != QUERY_LOADER:  # the kNN bank needs no text
            return {"features": self.encode({}, [batch["eval_view"]])[0], "y": batch["y"]}
        sample, text = self.encode(batch, [batch["eval_view"]])
        z_sample, z_text = self.joint(sample, text)
        out = {"features": sample, "y": batch["y"], "joint_features": z_sample, "paired_features": z_text}
        if self.probe is not None:
            out["probe_logits"] = self.probe(sample)
        return out

    def evaluators(self) -> Evaluators:
        info, hp = self.data_info, self.hparams
        single = 0 if info.multilabel else info.num_classes
        callbacks = [
            RetrievalMetrics(keys=("joint_features", "paired_features"), num_classes=single, knn_k=hp.knn_k,
                             knn_temperature=hp.knn_temperature)
        ]  # fmt: skip
        class_names = info.extra.get("class_names") or []
        if class_names:
            callbacks.append(ZeroShotMetrics(class_names, self.zero_shot_templates))
        return Evaluators(callbacks, "val/recall_at_1", "max")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse weights whose token embeddings index another vocabulary than the data's tokenizer."""
        saved = checkpoint.get("hyper_parameters", {}).get("data_info")
        ours, theirs = (getattr(i, "extra", {}).get("text", {}) for i in (self.data_info, saved))
        for key in ("sha256", "hf_path"):
            if theirs.get(key) and ours.get(key) and theirs[key] != ours[key]:
                raise CheckpointError(
                    f"the checkpoint's text tower was trained with tokenizer {theirs.get('tokenizer') or theirs[key]}, "
                    f"but the data now gives {ours.get('tokenizer') or ours[key]}: use the data (and tokenizer_dir) "
                    "the run was trained on"
                )
