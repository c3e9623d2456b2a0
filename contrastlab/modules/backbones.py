"""Backbones by name: any timm model, plus small local nets for tiny inputs.

Every backbone maps a batch to pooled features (B, num_features); `create_backbone` never downloads
weights unless a config explicitly sets `pretrained` to true.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import timm
from torch import Tensor, nn

from contrastlab.errors import ConfigError


class SmallCNN(nn.Module):
    """A small VGG-style CNN for 8x8 to 32x32 inputs: stages of conv-BN-ReLU, stride 2 between stages.

    Args:
        in_chans: input channels.
        widths: output channels of each stage.
        convs_per_stage: convs in every stage, or one count per stage.
        strides: stride of each stage's first conv (default: 1 for the first stage, 2 after), so that a net
            such as lightly's 4-conv CNN (strides 1, 2, 2, 1) is expressible.
    """

    def __init__(
        self,
        in_chans: int = 3,
        widths: tuple[int, ...] = (64, 128, 256),
        convs_per_stage: int | tuple[int, ...] = 2,
        strides: tuple[int, ...] | None = None,
    ):
        super().__init__()
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
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


LOCAL_BACKBONES: dict[str, Callable[..., nn.Module]] = {"small_cnn": SmallCNN}


def available_backbones() -> list[str]:
    return sorted(LOCAL_BACKBONES) + timm.list_models()


def create_backbone(
    name: str, in_chans: int = 3, pretrained: bool = False, cifar_stem: bool = False, **kwargs
) -> nn.Module:
    """A feature extractor by name, with `num_features` set to its output width.

    Args:
        name: a local name (`small_cnn`) or any `timm.list_models()` name (`resnet18`, `vit_tiny_patch16_224`).
        in_chans: input channels (1 for grey images).
        pretrained: load timm's pretrained weights; needs network access, so off by default.
        cifar_stem: for ResNet-style timm models, a 3x3 stride-1 first conv and no max-pool, the usual
            change for 32x32 images (He et al. 2016, sec. 4.2).
        kwargs: passed to the model's constructor.
    """
    if name in LOCAL_BACKBONES:
        if pretrained:
            raise ConfigError(
                f"model.backbone={name!r} is a local net with no pretrained weights: set pretrained false"
            )
        if cifar_stem:
            raise ConfigError(f"model.cifar_stem applies to ResNet-style timm models, not {name!r}: set it false")
        return _construct(LOCAL_BACKBONES[name], name, in_chans=in_chans, **kwargs)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, available_backbones(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() or use small_cnn"
        raise ConfigError(f"model.backbone: unknown backbone {name!r}; {hint}")
    model = _construct(timm.create_model, name, name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs)
    if cifar_stem:
        _use_cifar_stem(model, name, in_chans)
    return model


def _construct(factory: Callable[..., nn.Module], name: str, *args, **kwargs) -> nn.Module:
    try:
        return factory(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model.backbone_kwargs: {name!r} does not accept these arguments ({err})") from err


def _use_cifar_stem(model: nn.Module, name: str, in_chans: int) -> None:
    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ConfigError(f"model.cifar_stem needs a ResNet-style model with conv1 and maxpool; {name!r} has neither")
    model.conv1 = nn.Conv2d(in_chans, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
