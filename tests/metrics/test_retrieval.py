"""Recall@K for paired data: against a plain loop, and from a two-tower method through its evaluators hook."""

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from contrastlab.contract import DataInfo, ViewPipeline
from contrastlab.datamodules.base import ContrastiveDataModule
from contrastlab.metrics.online import Evaluators
from contrastlab.metrics.retrieval import RetrievalMetrics, recall_at_k
from contrastlab.modules import losses
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.nets.registry import register_backbone


def reference_recall(a: Tensor, b: Tensor, k: int) -> float:
    """For each i: is b[i] among the k keys most cosine-similar to a[i] (ties counted against it)?"""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    hits = 0
    for i in range(len(a)):
        own = float(a[i] @ b[i])
        better = sum(1 for j in range(len(b)) if j != i and float(a[i] @ b[j]) >= own)
        hits += better < k
    return hits / len(a)


def test_recall_at_k_matches_a_plain_loop_in_both_directions():
    torch.manual_seed(0)
    a = torch.randn(40, 8)
    b = a + 0.8 * torch.randn(40, 8)
    got = recall_at_k(a, b, ks=(1, 5), chunk_size=7)
    for k in (1, 5):
        assert got[f"a_to_b_recall_at_{k}"] == pytest.approx(reference_recall(a, b, k))
        assert got[f"b_to_a_recall_at_{k}"] == pytest.approx(reference_recall(b, a, k))
        assert got[f"recall_at_{k}"] == pytest.approx((reference_recall(a, b, k) + reference_recall(b, a, k)) / 2)
    assert recall_at_k(a, a, ks=(1,))["recall_at_1"] == 1.0
    with pytest.raises(ValueError, match="pairs must align"):
        recall_at_k(a, b[:-1])


# -- a two-tower method on synthetic pairs --------------------------------------------------------------


@register_backbone("test_paired_conv1d", dims=1)
class Conv1dEncoder(nn.Module):
    def __init__(self, in_chans: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(in_chans, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
        self.num_features = width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


class Jitter(ViewPipeline):
    def forward(self, x):
        return [x + 0.05 * torch.randn_like(x) for _ in range(self.num_views)]

    def eval_view(self, x):
        return x


class Pairs(ContrastiveDataModule):
    """Signal i and a 6-number description of it (a fixed random projection of its spectrum)."""

    @property
    def info(self):
        return DataInfo("pairs", "series", (1, 32), 0, views="tests.metrics.test_retrieval.Jitter")

    def load_split(self, split):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        x = torch.randn(64, 1, 32, generator=g).cumsum(dim=-1)
        describe = torch.randn(17, 6, generator=torch.Generator().manual_seed(9))
        x2 = torch.fft.rfft(x[:, 0]).abs() @ describe
        return [{"x": x[i], "x2": x2[i], "y": -1, "idx": i} for i in range(len(x))]


class TwoTower(ContrastiveModule):
    """CLIP-style: the signal's backbone and a text-like tower, InfoNCE between the two sides."""

    def __init__(self, **base):
        super().__init__(**base)
        self.other_tower = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, self.feature_dim))

    def contrastive_loss(self, feats, batch):
        return losses.nt_xent(feats[0], self.other_tower(batch["x2"]), 0.1)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return {
            **super().validation_step(batch, batch_idx, dataloader_idx),
            "paired_features": self.other_tower(batch["x2"]),
        }

    def evaluators(self) -> Evaluators:
        return Evaluators([RetrievalMetrics(ks=(1, 5, 10))], "val/recall_at_1", "max")


def test_a_two_tower_method_reports_recall_at_k_through_its_evaluators():
    torch.manual_seed(0)
    data = Pairs(batch_size=16)
    model = TwoTower(backbone="test_paired_conv1d", data_info=data.info)
    trainer = L.Trainer(
        max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    r1, r5, r10 = (metrics[f"val/recall_at_{k}"] for k in (1, 5, 10))
    assert 0.0 <= r1 <= r5 <= r10 <= 1.0
    assert r10 > 10 / 64, "after training, pairs are found above chance"
    assert "val/effective_rank" in metrics  # the label-free statistics still run
