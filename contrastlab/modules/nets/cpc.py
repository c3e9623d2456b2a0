"""The CPC encoder (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding").

g_enc: strided 1-D convolutions map a (B, C, T) sequence to step-level latents z_t; g_ar: a GRU reads
them in order and gives the contexts c_t, each summarising z_1..z_t. As a backbone it returns one vector
per sequence (the pooled contexts) for kNN, probes and `contrastlab eval`; `steps` exposes z_t and c_t
for the CPC method. It takes `mask` (B, T) from `pad_collate`, or finds NaN steps in `x` (the series
DataModules' padding and missing values), so padded steps of a batch change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from contrastlab.errors import ConfigError
from contrastlab.modules.nets.registry import register_backbone

POOLS = ("context", "last", "latent")


class Steps(NamedTuple):
    """Step-level outputs: latents z (B, S, D), contexts c (B, S, H), and which steps are real (B, S) or None."""

    z: Tensor
    c: Tensor
    mask: Tensor | None


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each time step (B, D, S), as in Riviere et al. 2020's CPC.

    Unlike BatchNorm it mixes no samples and no steps, so padding cannot reach a real step's statistics.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


@register_backbone("cpc", dims=1)
class CPCEncoder(nn.Module):
    """Strided conv encoder and GRU context network of CPC; pooled over time as a backbone.

    The paper's audio encoder (16 kHz): five convolutions with strides (5, 4, 2, 2, 2) and kernels
    (10, 8, 4, 4, 4), 512 channels, ReLU, so one latent every 160 samples (10 ms), and a 256-unit GRU.
    At 8 kHz the same strides give one latent every 20 ms; short series (UCR: 100-500 steps) want few or
    no strides, e.g. `strides: [1, 1, 2]`.

    Args:
        in_chans: input channels (audio: 1, or several for multi-channel; multivariate series).
        strides: one per conv layer; their product is the downsampling from samples to steps.
        kernels: one per layer, each >= its stride; default 2*stride (the paper's), 3 for stride 1.
        width: channels of every conv layer (the latent dimension D).
        context_dim: GRU hidden size (H).
        norm: "channel" (LayerNorm over channels per step, mask-safe), "batch" or "none".
        pool: the backbone's output: "context" (mean of c_t over real steps), "last" (c at the last real
            step, what the paper's linear classifiers read) or "latent" (mean of z_t).
    """

    def __init__(
        self,
        in_chans: int = 1,
        strides: Sequence[int] = (5, 4, 2, 2, 2),
        kernels: Sequence[int] | None = None,
        width: int = 512,
        context_dim: int = 256,
        norm: str = "channel",
        pool: str = "context",
    ):
        super().__init__()
        strides = [int(s) for s in strides]
        kernels = [2 * s if s > 1 else 3 for s in strides] if kernels is None else [int(k) for k in kernels]
        if not strides or len(kernels) != len(strides):
            raise ConfigError(
                f"model.backbone_kwargs: cpc has {len(strides)} strides and {len(kernels)} kernels; give one "
                "kernel per stride (at least one layer)"
            )
        if any(s < 1 or k < s for s, k in zip(strides, kernels)):
            raise ConfigError(
                f"model.backbone_kwargs: cpc needs every stride >= 1 and kernel >= its stride (else samples "
                f"between windows are never read); got strides {strides}, kernels {kernels}"
            )
        if norm not in ("channel", "batch", "none"):
            raise ConfigError(f"model.backbone_kwargs.norm must be channel, batch or none; got {norm!r}")
        if pool not in POOLS:
            raise ConfigError(f"model.backbone_kwargs.pool must be one of {', '.join(POOLS)}; got {pool!r}")
        # padding (k - s) // 2: a kernel of 2s reads its stride block and half a block either side, and a
        # stride-1 kernel of 3 keeps the length.
        self.layers = nn.ModuleList()
        self.geometry: list[tuple[int, int, int]] = []  # (kernel, stride, padding) of each layer
        channels = in_chans
        for stride, kernel in zip(strides, kernels):
            padding = (kernel - stride) // 2
            norm_layer = {"channel": ChannelNorm, "batch": nn.BatchNorm1d}.get(norm)
            block = [nn.Conv1d(channels, width, kernel, stride=stride, padding=padding, bias=norm == "none")]
            block += [norm_layer(width)] if norm_layer else []
            self.layers.append(nn.Sequential(*block, nn.ReLU(inplace=True)))
            self.geometry.append((kernel, stride, padding))
            channels = width
        self.gru = nn.GRU(width, context_dim, batch_first=True)
        self.pool = pool
        self.latent_dim, self.context_dim = width, context_dim
        self.num_features = width if pool == "latent" else context_dim

    @property
    def downsampling(self) -> int:
        """Input samples per step (the product of the strides)."""
        return int(torch.tensor([s for _, s, _ in self.geometry]).prod())

    def num_steps(self, length: int) -> int:
        """Steps the encoder gives for an input of `length` samples."""
        for kernel, stride, padding in self.geometry:
            length = max(0, (length + 2 * padding - kernel) // stride + 1)
        return length

    def steps(self, x: Tensor, mask: Tensor | None = None) -> Steps:
        """z_t (B, S, D), c_t (B, S, H) and the real steps' mask (B, S) (None when `mask` is None).

        `mask` (B, T) is True on real steps; NaN steps of `x` (padding or missing values, as the series
        DataModules give them) are masked too. A step is real when the input sample that ends its window
        is real: for the padded tail of a batch, exactly the steps a sample of that length alone would get.
        Features at masked steps are zeroed after each layer, so they read as the zero padding a shorter
        input would have.
        """
        missing = x.isnan()  # the series DataModules pad, and mark missing values, with NaN
        if missing.any():
            observed = ~missing.any(dim=1)
            mask = observed if mask is None else mask & observed
        h = x if mask is None else torch.where(mask[:, None, :], x, 0.0)
        for layer, (kernel, stride, padding) in zip(self.layers, self.geometry):
            h = layer(h)
            if mask is not None:
                last_read = torch.arange(h.shape[-1], device=h.device) * stride + kernel - 1 - 2 * padding
                mask = mask[:, last_read]
                h = h * mask[:, None, :].to(h.dtype)
        z = h.transpose(1, 2)
        c, _ = self.gru(z)  # causal: c_t reads z_1..z_t only, so padding after t leaves it as it is
        return Steps(z, c, mask)

    def pooled(self, steps: Steps) -> Tensor:
        """One vector per sequence from its real steps (see `pool`)."""
        z, c, mask = steps
        if self.pool == "last":
            if mask is None:
                return c[:, -1]
            index = torch.arange(c.shape[1], device=c.device).expand_as(mask)
            last = torch.where(mask, index, 0).max(dim=1).values
            return c[torch.arange(c.shape[0], device=c.device), last]
        h = z if self.pool == "latent" else c
        if mask is None:
            return h.mean(dim=1)
        weights = mask[:, :, None].to(h.dtype)
        return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.pooled(self.steps(x, mask))
