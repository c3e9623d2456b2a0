"""3-D backbones for (C, D, H, W) volumes: a ResNet with 3x3x3 convolutions (Hara et al. 2018, "Can
spatiotemporal 3D CNNs retrace the history of 2D CNNs and ImageNet?"), as MedMNIST's 3-D baselines use."""

from __future__ import annotations

from torch import Tensor, nn

from contrastlab.errors import ConfigError
from contrastlab.modules.nets.registry import register_backbone


class BasicBlock3d(nn.Module):
    """Two 3x3x3 conv-BN layers with an identity (or 1x1x1 projection) shortcut."""

    def __init__(self, channels_in: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(channels_in, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(channels_in, channels, 1, stride=stride, bias=False), nn.BatchNorm3d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register_backbone("resnet3d", dims=3)
class ResNet3d(nn.Module):
    """A 3-D ResNet of basic blocks, pooled to (B, num_features).

    Args:
        in_chans: input channels.
        layers: blocks per stage ((2, 2, 2, 2) is ResNet-18, (1, 1, 1, 1) ResNet-10).
        widths: channels per stage.
        stem: `small` (a 3x3x3 stride-1 conv: volumes of 28-64 voxels a side, as MedMNIST 3-D) or `large`
            (7x7x7 stride 2 and a max-pool, for 128+ voxels).
    """

    def __init__(
        self,
        in_chans: int = 1,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        stem: str = "small",
    ):
        super().__init__()
        if len(layers) != len(widths):
            raise ConfigError(
                f"model.backbone_kwargs: resnet3d has {len(layers)} layers and {len(widths)} widths; give one per stage"
            )
        if stem == "small":
            self.stem = nn.Sequential(
                nn.Conv3d(in_chans, widths[0], 3, padding=1, bias=False),
                nn.BatchNorm3d(widths[0]),
                nn.ReLU(inplace=True),
            )
        elif stem == "large":
            self.stem = nn.Sequential(
                nn.Conv3d(in_chans, widths[0], 7, stride=2, padding=3, bias=False),
                nn.BatchNorm3d(widths[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(3, stride=2, padding=1),
            )
        else:
            raise ConfigError(f"model.backbone_kwargs.stem={stem!r}: use small or large")
        blocks: list[nn.Module] = []
        channels = widths[0]
        for stage, (count, width) in enumerate(zip(layers, widths)):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock3d(channels, width, stride))
                channels = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.num_features = channels
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


@register_backbone("resnet3d_18", dims=3)
def resnet3d_18(in_chans: int = 1, **kwargs) -> ResNet3d:
    """ResNet-18 in 3-D (MedMNIST 3-D's ResNet-18 + 3D baseline)."""
    return ResNet3d(in_chans, layers=(2, 2, 2, 2), **kwargs)


@register_backbone("resnet3d_10", dims=3)
def resnet3d_10(in_chans: int = 1, **kwargs) -> ResNet3d:
    """ResNet-10 in 3-D: one block per stage."""
    return ResNet3d(in_chans, layers=(1, 1, 1, 1), **kwargs)
