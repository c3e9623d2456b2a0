"""1-D conv nets for (C, T) series: Wang et al.'s FCN and ResNet baselines and an InceptionTime encoder.

Masks: a padded or missing step is NaN in the input (see datamodules/series.py); each net reads the mask
`~x.isnan().any(1)` (or the `mask` it is given), sets those steps to 0 before every conv, and pools the
average over the observed steps only: padding never dilutes a short series' features, and FCN and ResNet
give a padded series (in eval mode) exactly the features of the same series unpadded.
`timestamps(x)` returns the per-step features (B, D, T) and the mask, for methods that contrast steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastlab.modules.nets.registry import register_backbone


def split_mask(x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """(x with masked steps at 0, mask (B, T) True on observed steps or None when all are)."""
    missing = x.isnan()
    if mask is None and not bool(missing.any()):
        return x, None
    observed = ~missing.any(dim=1)
    mask = observed if mask is None else mask.bool() & observed
    return torch.where(mask.unsqueeze(1), x.nan_to_num(), torch.zeros_like(x)), mask


def masked_mean(h: Tensor, mask: Tensor | None) -> Tensor:
    """(B, D, T) -> (B, D): the average over the observed steps (all steps without a mask)."""
    if mask is None:
        return h.mean(dim=-1)
    weight = mask.unsqueeze(1).to(h.dtype)
    return (h * weight).sum(dim=-1) / weight.sum(dim=-1).clamp(min=1)


def masked(x: Tensor, keep: Tensor | None) -> Tensor:
    return x if keep is None else x * keep


def conv_bn(cin: int, cout: int, kernel: int) -> nn.Sequential:
    # "same" padding; even kernels (Wang et al.'s 8) pad one more on the right
    pad = nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0)
    return nn.Sequential(pad, nn.Conv1d(cin, cout, kernel, bias=False), nn.BatchNorm1d(cout))


class MaskedSeriesNet(nn.Module):
    """Features (B, D, T) from `body`, then the masked average over time."""

    num_features: int

    def body(self, x: Tensor, keep: Tensor | None) -> Tensor:
        """Per-step features; `keep` (B, 1, T) float (None: every step) zeroes masked steps between layers."""
        raise NotImplementedError

    def timestamps(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        x, mask = split_mask(x.float(), mask)
        keep = None if mask is None else mask.unsqueeze(1).to(x.dtype)
        h = self.body(x, keep)
        return (h if keep is None else h * keep), mask

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return masked_mean(*self.timestamps(x, mask))


@register_backbone("fcn1d", dims=1)
class FCN1d(MaskedSeriesNet):
    """Wang et al. (2017) FCN: three conv-BN-ReLU blocks (kernels 8, 5, 3), global average pooling.

    Args:
        in_chans: channels of the series.
        widths: the blocks' widths (the paper's 128, 256, 128).
    """

    def __init__(self, in_chans: int = 1, widths: tuple[int, ...] = (128, 256, 128)):
        super().__init__()
        layers, channels = [], in_chans
        for width, kernel in zip(widths, (8, 5, 3)):
            layers.append(nn.Sequential(conv_bn(channels, width, kernel), nn.ReLU(inplace=True)))
            channels = width
        self.layers = nn.ModuleList(layers)
        self.num_features = channels

    def body(self, x: Tensor, keep: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(masked(x, keep))
        return x


class ResidualBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...] = (8, 5, 3)):
        super().__init__()
        self.convs = nn.ModuleList(conv_bn(cin if i == 0 else cout, cout, k) for i, k in enumerate(kernels))
        self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(masked(h, keep))
            if i < len(self.convs) - 1:
                h = self.relu(h)
        return self.relu(h + self.shortcut(x))


@register_backbone("resnet1d", dims=1)
class ResNet1d(MaskedSeriesNet):
    """Wang et al. (2017) time-series ResNet: residual blocks of three conv-BN(-ReLU) layers (kernels 8, 5,
    3) with a 1x1 conv shortcut, then global average pooling.

    Args:
        in_chans: channels of the series.
        widths: one width per block (the paper's 64, 128, 128).
    """

    def __init__(self, in_chans: int = 1, widths: tuple[int, ...] = (64, 128, 128)):
        super().__init__()
        blocks, channels = [], in_chans
        for width in widths:
            blocks.append(ResidualBlock1d(channels, width))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        self.num_features = channels

    def body(self, x: Tensor, keep: Tensor | None) -> Tensor:
        for block in self.blocks:
            x = block(masked(x, keep), keep)
        return x


class InceptionModule(nn.Module):
    """A 1x1 bottleneck, three parallel convs of decreasing kernel, and a max-pool branch, concatenated."""

    def __init__(self, cin: int, filters: int, kernel: int, bottleneck: int):
        super().__init__()
        self.bottleneck = nn.Conv1d(cin, bottleneck, 1, bias=False) if cin > 1 and bottleneck else nn.Identity()
        width = bottleneck if cin > 1 and bottleneck else cin
        kernels = [max(1, kernel // 2**i) for i in range(3)]
        kernels = [k if k % 2 else k - 1 for k in kernels]  # odd, so "same" padding is symmetric
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding=k // 2, bias=False) for k in kernels)
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(cin, filters, 1, bias=False))
        self.out = nn.Sequential(nn.BatchNorm1d(4 * filters), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        z = self.bottleneck(x)
        return self.out(torch.cat([conv(z) for conv in self.convs] + [self.pool(x)], dim=1))


@register_backbone("inception_time", dims=1)
class InceptionTime(MaskedSeriesNet):
    """InceptionTime's network (Ismail Fawaz et al. 2020): `depth` Inception modules with a residual
    connection every three, then global average pooling; one network of the paper's ensemble.

    Args:
        in_chans: channels of the series.
        filters: each branch's width (the module's output is 4 x filters; the paper's 32).
        depth: Inception modules (the paper's 6).
        kernel: the longest kernel (the paper's 40; then 20 and 10, made odd).
        bottleneck: the 1x1 bottleneck's width (the paper's 32; 0: none).
    """

    def __init__(self, in_chans: int = 1, filters: int = 32, depth: int = 6, kernel: int = 40, bottleneck: int = 32):
        super().__init__()
        self.modules_ = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        channels, residual_in = in_chans, in_chans
        for d in range(depth):
            self.modules_.append(InceptionModule(channels, filters, kernel, bottleneck))
            channels = 4 * filters
            if d % 3 == 2:
                self.shortcuts.append(
                    nn.Sequential(nn.Conv1d(residual_in, channels, 1, bias=False), nn.BatchNorm1d(channels))
                )
                residual_in = channels
        self.relu = nn.ReLU(inplace=True)
        self.num_features = channels

    def body(self, x: Tensor, keep: Tensor | None) -> Tensor:
        residual = x
        for d, module in enumerate(self.modules_):
            x = module(masked(x, keep))
            if d % 3 == 2:
                x = self.relu(x + self.shortcuts[d // 3](residual))
                residual = x
        return x
