"""TS-TCC (Eldele et al. 2021, "Time-Series Representation Learning via Temporal and Contextual Contrasting")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.nets.ts2vec import masked_max_pool
from contrastlab.modules.ts2vec import _same_length


class ContextSummary(nn.Module):
    """TS-TCC's autoregressive model: the steps up to t, linearly embedded, behind a learned context token
    through a pre-norm Transformer encoder; the token's output is the context c_t."""

    def __init__(self, feature_dim: int, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.embed = nn.Linear(feature_dim, dim)
        self.token = nn.Parameter(torch.randn(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, mlp_dim, dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, steps: Tensor) -> Tensor:
        x = self.embed(steps)
        x = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.transformer(x)[:, 0]


class TSTCC(ContrastiveModule):
    """A weak (jitter and scale) and a strong (permutation and jitter) view of each series; per-step features
    of each from the encoder. Temporal contrasting: the context of one view up to a random step t predicts
    the other view's next `timesteps` steps (cross-view prediction, an InfoNCE over the batch). Contextual
    contrasting: NT-Xent between the projected contexts of the two views. Loss = tc_weight * (TC(w->s) +
    TC(s->w)) + cc_weight * NT-Xent. Features for evaluation: the encoder's steps max-pooled.

    Args:
        timesteps: K, future steps predicted (6 in the paper); needs K < the encoder's output steps.
        context_dim, depth, heads, mlp_dim, dropout: the context Transformer (100, 4, 4, 64, 0.1).
        temperature: of the contextual NT-Xent (0.2).
        tc_weight, cc_weight: lambda_1 and lambda_2 (1 and 0.7).
        backbone: the paper's 3-block 1-D CNN (`tstcc_cnn`) unless the config names another.
    """

    def __init__(
        self,
        timesteps: int = 6,
        context_dim: int = 100,
        depth: int = 4,
        heads: int = 4,
        mlp_dim: int = 64,
        dropout: float = 0.1,
        temperature: float = 0.2,
        tc_weight: float = 1.0,
        cc_weight: float = 0.7,
        backbone: str = "tstcc_cnn",
        **base,
    ):
        checks.positive("temperature", temperature)
        if timesteps < 1:
            raise ConfigError(f"model.init_args.timesteps must be >= 1, got {timesteps}")
        if context_dim % heads:
            raise ConfigError(f"model.init_args.context_dim={context_dim} must be a multiple of heads={heads}")
        super().__init__(backbone=backbone, **base)
        checks.sequence_backbone(self)
        d = self.feature_dim
        self.context = ContextSummary(d, context_dim, depth, heads, mlp_dim, dropout)
        self.predictors = nn.ModuleList(nn.Linear(context_dim, d) for _ in range(timesteps))
        self.projector = nn.Sequential(
            nn.Linear(context_dim, d // 2), nn.BatchNorm1d(d // 2), nn.ReLU(inplace=True), nn.Linear(d // 2, d // 4)
        )

    def encode(self, batch: Batch, views: list[Tensor]) -> list[Tensor]:
        mask = batch.get("mask")
        if not self.training:
            return [self.backbone(v, _same_length(mask, v)) for v in views]
        sequences = [self.backbone.sequence(v, _same_length(mask, v)) for v in views[:2]]
        # TS-TCC L2-normalises each step's features before contrasting them
        batch["sequences"] = [(F.normalize(h, dim=-1), valid) for h, valid in sequences]
        return [masked_max_pool(h, valid) for h, valid in sequences]

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        (weak, valid), (strong, _) = batch["sequences"]
        tc_ws, context_w = self._temporal_contrast(weak, strong, valid)
        tc_sw, context_s = self._temporal_contrast(strong, weak, valid)
        cc = losses.nt_xent(self.projector(context_w), self.projector(context_s), self.hparams.temperature)
        return self.hparams.tc_weight * (tc_ws + tc_sw) + self.hparams.cc_weight * cc

    def _temporal_contrast(self, source: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """The context of `source` up to a random step t, and how well it predicts `target` at t+1 .. t+K."""
        k = len(self.predictors)
        shortest = int(valid.sum(dim=1).min())  # padding is at the end: every step before it is real
        if shortest <= k:
            raise ConfigError(
                f"model.init_args.timesteps={k}: the encoder gives only {shortest} steps for the shortest series "
                "of a batch, and predicting K steps needs more than K; lower timesteps or use a backbone that "
                "downsamples less (ts2vec keeps every step)"
            )
        t = int(torch.randint(shortest - k, (), device=source.device))
        context = self.context(source[:, : t + 1])
        future = target[:, t + 1 : t + 1 + k].transpose(0, 1)  # K x B x D
        predicted = torch.stack([predictor(context) for predictor in self.predictors])
        return losses.temporal_contrasting(future, predicted), context
