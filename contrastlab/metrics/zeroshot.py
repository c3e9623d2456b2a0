"""Zero-shot classification from class prompts (CLIP, Radford et al. 2021, sec. 3.1.4), for any paired method.

Each class name fills every template ("a photo of a {label}"); the text side embeds the prompts, their mean
over templates (normalised, CLIP's prompt ensembling) is the class's embedding, and a sample's class scores are
its cosine similarities to them. Single-label data reports top-1 accuracy; multi-label data (one prompt set
per observation) the macro AUROC and mAP of the scores.

What it needs, and nothing modality-specific: the query split's joint-space embeddings under `key` (a paired
method's evaluation step returns them), a DataModule with a `tokenizer` (texts -> token tensors) and a module
with `embed_text(tokens)` (tokens -> joint-space embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.contract import QUERY_LOADER
from contrastlab.metrics.multilabel import multilabel_scores
from contrastlab.metrics.online import EmbeddingMetrics, loader_name

DEFAULT_TEMPLATES = ("a photo of a {label}",)


def class_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Prompts class-major: every template of class 0, then of class 1, ..."""
    for template in templates:
        if "{label}" not in template:
            raise ValueError(f"zero-shot template {template!r} has no {{label}} to fill")
    return [t.format(label=name) for name in class_names for t in templates]


def class_embeddings(prompt_embeddings: Tensor, num_classes: int) -> Tensor:
    """(C * T, D) prompt embeddings, class-major -> (C, D): each class's normalised mean over its T templates."""
    per_class = F.normalize(prompt_embeddings.float(), dim=1).view(num_classes, -1, prompt_embeddings.shape[1])
    return F.normalize(per_class.mean(dim=1), dim=1)


def zero_shot_scores(embeddings: Tensor, classes: Tensor) -> Tensor:
    """(N, C) cosine similarities of N sample embeddings to C class embeddings."""
    return F.normalize(embeddings.float(), dim=1) @ F.normalize(classes.float(), dim=1).T


def zero_shot_metrics(scores: Tensor, y: Tensor) -> dict[str, float]:
    """`accuracy` for class indices y (N,), unlabelled (-1) skipped; `auroc` and `map` for multi-hot y (N, C)."""
    if y.ndim == 2:
        return multilabel_scores(scores, y.clamp(min=0))  # an ignored (-1) observation counts as absent
    labelled = y >= 0
    return {"accuracy": (scores[labelled].argmax(dim=1) == y[labelled]).float().mean().item()}


class ZeroShotMetrics(EmbeddingMetrics):
    """`{prefix}/zero_shot_accuracy` (multi-label data: `_auroc`, `_map`) of the query split.

    Args:
        class_names: the names that fill the templates, in label order.
        templates: prompts with `{label}`, averaged per class.
        key: the evaluation outputs' joint-space embeddings of the samples.
    """

    def __init__(
        self, class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES, key: str = "joint_features"
    ):
        super().__init__(num_classes=len(class_names))
        self.class_names, self.templates, self.key = list(class_names), list(templates), key
        class_prompts(self.class_names, self.templates)  # refuse a bad template before training

    def _collect(self, trainer, outputs, dataloader_idx) -> None:
        if loader_name(trainer, dataloader_idx) == QUERY_LOADER and outputs and self.key in outputs:
            for key in (self.key, "y"):
                self._store[QUERY_LOADER][key].append(outputs[key].detach())

    @torch.no_grad()
    def _compute(self, trainer, pl_module, prefix: str) -> None:
        query = self._store.get(QUERY_LOADER, {})
        self._reset()
        if trainer.sanity_checking or not query.get(self.key):
            return
        embeddings, y = (self._gather(pl_module, query[k]) for k in (self.key, "y"))
        if not (y >= 0).any():
            return
        tokens = trainer.datamodule.tokenizer(class_prompts(self.class_names, self.templates))
        tokens = {k: v.to(embeddings.device) for k, v in tokens.items()}
        classes = class_embeddings(pl_module.embed_text(tokens), len(self.class_names))
        metrics = zero_shot_metrics(zero_shot_scores(embeddings, classes), y)
        for name, value in metrics.items():
            pl_module.log(f"{prefix}/zero_shot_{name}", value, sync_dist=False)  # equal on every rank
