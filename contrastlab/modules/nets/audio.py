"""Raw-waveform audio encoders (1-D backbones)."""

from __future__ import annotations

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
