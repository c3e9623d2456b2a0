"""Local 2-D backbones for images (timm's models serve the rest, by name: modules/core/backbones.py)."""

from __future__ import annotations

from torch import Tensor, nn

from contrastlab.errors import ConfigError
from contrastlab.modules.nets.registry import register_backbone


@register_backbone("small_cnn", dims=2)
class SmallCNN(nn.Module):
    """A small VGG-style CNN for 8x8 to 32x32 inputs: stages of conv-BN-ReLU, stride 2 between stages.

    Args:
        in_chans: input channels.
        widths: output channels of each stage.
        convs_per_stage: convs in every stage, or one count per stage.
        strides: stride of each stage's first conv (default: 1 for the first stage, 2 after), so that a net
            such as lightly's 4-conv CNN (strides 1, 2, 2, 1) is expressible.
        pool_size: the last feature map is average-pooled to pool_size x pool_size and flattened
            (num_features = last width x pool_size^2). 1, global pooling, discards where things are; 2 or 3
            keep a coarse layout, which small grey images (clothing's sleeves and hems) are mostly about.
    """

    def __init__(
        self,
        in_chans: int = 3,
        widths: tuple[int, ...] = (64, 128, 256),
        convs_per_stage: int | tuple[int, ...] = 2,
        strides: tuple[int, ...] | None = None,
        pool_size: int = 1,
    ):
        super().__init__()
        if pool_size < 1:
            raise ConfigError(f"model.backbone_kwargs.pool_size={pool_size}: give 1 (global pooling) or more")
        convs = [convs_per_stage] * len(widths) if isinstance(convs_per_stage, int) else list(convs_per_stage)
        strides = [1] + [2] * (len(widths) - 1) if strides is None else list(strides)
        if len(convs) != len(widths) or len(strides) != len(widths):
            raise ConfigError(
                f"model.backbone_kwargs: small_cnn has {len(widths)} widths, {len(convs)} convs_per_stage and "
                f"{len(strides)} strides; give one per stage"
            )
        layers: list[nn.Module] = []
        channels = in_chans
        for width, n_convs, first_stride in zip(widths, convs, strides):
            for conv in range(n_convs):
                stride = first_stride if conv == 0 else 1
                layers += [
                    nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.num_features = channels * pool_size**2

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)
