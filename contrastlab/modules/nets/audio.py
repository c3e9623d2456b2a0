"""Audio encoders: raw-waveform nets (1-D backbones) and log-mel nets, which read (C, n_mels, frames) views."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastlab.errors import ConfigError
from contrastlab.modules.nets.registry import register_backbone

# CLMR's SampleCNN (59049 samples = 3^10): a strided stem, nine conv-pool blocks, then a 1x1-wide block.
SAMPLECNN_WIDTHS = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512)


@register_backbone("samplecnn", dims=1)
class SampleCNN(nn.Module):
    """SampleCNN (Lee et al. 2017; CLMR's encoder, Spijkervet & Burgoyne 2021): sample-level filters of size 3.

    A stem conv of width 3 and stride 3, then blocks of conv(3)-BN-ReLU-maxpool(3), each dividing the length by
    3, and a last conv block without pooling; features are averaged over the time left (CLMR's 3^10 input
    leaves one step; shorter clips, e.g. 1 s at 8 kHz with fewer blocks, leave a few).

    Args:
        in_chans: input channels.
        widths: channels of the stem, of each pooled block, and of the last block (CLMR: 128, 128x2, 256x6,
            512, 512: 9 pooled blocks for 59049 samples).
        dropout: before the features (CLMR: 0.5 in its supervised head; 0 here).
    """

    def __init__(self, in_chans: int = 1, widths: tuple[int, ...] = SAMPLECNN_WIDTHS, dropout: float = 0.0):
        super().__init__()
        widths = tuple(widths)
        if len(widths) < 2:
            raise ConfigError(f"model.backbone_kwargs.widths: samplecnn needs a stem and a last block, got {widths}")
        layers: list[nn.Module] = [
            nn.Conv1d(in_chans, widths[0], 3, stride=3, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        channels = widths[0]
        for width in widths[1:-1]:
            layers += [
                nn.Conv1d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(3, ceil_mode=True),
            ]
            channels = width
        layers += [
            nn.Conv1d(channels, widths[-1], 3, padding=1, bias=False),
            nn.BatchNorm1d(widths[-1]),
            nn.ReLU(inplace=True),
        ]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.num_features = widths[-1]
        self.min_length = 3 ** (len(widths) - 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] < 3:
            raise ConfigError(
                f"samplecnn: inputs of {x.shape[-1]} samples are too short; give at least {self.min_length}"
            )
        return self.dropout(self.features(x).mean(dim=-1))


# -- log-mel encoders: spectrogram views (C, n_mels, frames) in, pooled over time -------------------------


class StatsPool(nn.Module):
    """(B, D, T) -> (B, 2D): the mean and the standard deviation over time (x-vector's statistics pooling,
    Snyder et al. 2018), or (B, D) for `mean` alone. The std keeps how a band moves over the word, which a
    mean of a short clip averages away (MFCC mean+std, the baseline, is the same statistic of the input)."""

    def __init__(self, mode: str = "meanstd"):
        super().__init__()
        if mode not in ("mean", "meanstd", "meanmax"):
            raise ConfigError(f"model.backbone_kwargs.pooling: give mean, meanstd or meanmax, got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=-1)
        if self.mode == "mean":
            return mean
        if self.mode == "meanmax":
            return torch.cat([mean, x.amax(dim=-1)], dim=1)
        return torch.cat([mean, x.var(dim=-1, unbiased=False).add(1e-5).sqrt()], dim=1)

    def width(self, channels: int) -> int:
        return channels if self.mode == "mean" else 2 * channels


def conv1d_block(channels: int, width: int, kernel: int, dilation: int) -> list[nn.Module]:
    padding = dilation * (kernel - 1) // 2
    return [
        nn.Conv1d(channels, width, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm1d(width),
        nn.ReLU(inplace=True),
    ]


@register_backbone("logmel_tdnn", dims=2)
class LogMelTDNN(nn.Module):
    """A time-delay net over log-mel frames (x-vector's frame layers, Snyder et al. 2018): the mel bins (times
    channels) are the input channels of dilated 1-D convs over time, then statistics pooling.

    Args:
        in_chans: the views' channels (C of (C, n_mels, frames)).
        info: the views' shape (the CLI passes it): n_mels is read from it.
        widths, kernels, dilations: one per frame layer.
        pooling: `meanstd` (statistics pooling), `meanmax` (BYOL-A's) or `mean`.
        feature_norm: a BatchNorm without affine on the pooled features, so that cosine kNN compares
            standardised statistics (as MFCC 1-NN compares z-scored ones) instead of the largest ones.
        input_norm: each clip's mel bands standardised over its frames first (cepstral mean and variance
            normalisation): a microphone's or a room's fixed colouring of the spectrum, which differs by
            speaker in FSDD, is removed from what the net sees.
    """

    def __init__(
        self,
        in_chans: int = 1,
        info=None,
        n_mels: int | None = None,
        widths: tuple[int, ...] = (256, 256, 256, 512),
        kernels: tuple[int, ...] = (5, 3, 3, 1),
        dilations: tuple[int, ...] = (1, 2, 3, 1),
        pooling: str = "meanstd",
        feature_norm: bool = True,
        input_norm: bool = False,
    ):
        super().__init__()
        n_mels = n_mels or (info.shape[-2] if info is not None else None)
        if not n_mels:
            raise ConfigError("model.backbone_kwargs.n_mels: logmel_tdnn needs the views' mel bins")
        if not len(widths) == len(kernels) == len(dilations):
            raise ConfigError(
                f"model.backbone_kwargs: logmel_tdnn has {len(widths)} widths, {len(kernels)} kernels and "
                f"{len(dilations)} dilations; give one per layer"
            )
        channels = in_chans * n_mels
        layers: list[nn.Module] = [nn.InstanceNorm1d(channels)] if input_norm else []
        for width, kernel, dilation in zip(widths, kernels, dilations):
            layers += conv1d_block(channels, width, kernel, dilation)
            channels = width
        self.frames = nn.Sequential(*layers)
        self.pool = StatsPool(pooling)
        self.num_features = self.pool.width(channels)
        self.norm = nn.BatchNorm1d(self.num_features, affine=False) if feature_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.pool(self.frames(x.flatten(1, -2))))


@register_backbone("logmel_cnn", dims=2)
class LogMelCNN(nn.Module):
    """BYOL-A's encoder (Niizumi et al. 2021, AudioNTT2020): blocks of conv3x3-BN-ReLU-maxpool2 over (mels,
    frames), the channels and remaining mel bins of each frame flattened into an MLP, then pooled over time.

    Args:
        in_chans, info, n_mels: as `logmel_tdnn`'s.
        widths: channels of each conv block (BYOL-A: 64, 64, 64).
        hidden: the frame MLP's width (BYOL-A: 2048; 0: none).
        pooling, feature_norm: as `logmel_tdnn`'s (BYOL-A pools mean + max).
    """

    def __init__(
        self,
        in_chans: int = 1,
        info=None,
        n_mels: int | None = None,
        widths: tuple[int, ...] = (64, 64, 64),
        hidden: int = 512,
        pooling: str = "meanstd",
        feature_norm: bool = True,
    ):
        super().__init__()
        n_mels = n_mels or (info.shape[-2] if info is not None else None)
        if not n_mels:
            raise ConfigError("model.backbone_kwargs.n_mels: logmel_cnn needs the views' mel bins")
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.convs = nn.Sequential(*layers)
        flat = channels * (n_mels // 2 ** len(widths))
        if flat < 1:
            raise ConfigError(f"model.backbone_kwargs: {len(widths)} blocks halve {n_mels} mel bins to none")
        self.mlp = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True)) if hidden else nn.Identity()
        self.pool = StatsPool(pooling)
        self.num_features = self.pool.width(hidden or flat)
        self.norm = nn.BatchNorm1d(self.num_features, affine=False) if feature_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        maps = self.convs(x)  # (B, C, mels', frames')
        frames = self.mlp(maps.flatten(1, 2).transpose(1, 2))  # (B, frames', D)
        return self.norm(self.pool(frames.transpose(1, 2)))
