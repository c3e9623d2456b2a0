"""Backbones by name and modality: timm for 2-D images, a registry of local nets for any sample rank.

`create_backbone(name, info, **kwargs)` builds a feature extractor for the data `info` describes: a local
net registered with `@register_backbone(name, dims=...)` (1 for (C, T) series and audio, 2 for images,
3 for (C, D, H, W) volumes), else, for 2-D data, any `timm.list_models()` name. Every backbone maps a
batch to pooled features (B, num_features); nothing downloads weights unless a config sets `pretrained`.
A registered factory is called with `in_chans` (the data's channels), the config's `backbone_kwargs`,
and `info` too when its signature names it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import timm
from torch import nn

from contrastlab.errors import ConfigError
from contrastlab.modules import nets  # noqa: F401  (registers every local net by name)
from contrastlab.modules.nets.registry import BACKBONES

if TYPE_CHECKING:
    from contrastlab.contract import DataInfo


def available_backbones(dims: int = 2) -> list[str]:
    """Names that build a backbone for samples of this rank (timm's models are 2-D)."""
    local = sorted(k for k, entry in BACKBONES.items() if entry.dims == dims)
    return local + (timm.list_models() if dims == 2 else [])


def create_backbone(
    name: str, info: DataInfo, pretrained: bool = False, view_shapes: Sequence[tuple[int, ...]] = (), **kwargs: Any
) -> nn.Module:
    """A feature extractor by name for the data `info` describes, with `num_features` set to its output width.

    Args:
        name: a registered name (`small_cnn`, ...) or, for 2-D data, any `timm.list_models()` name
            (`resnet18`, `vit_tiny_patch16_224`).
        info: the data: its channels and sample rank choose and shape the net.
        pretrained: load timm's pretrained weights; needs network access, so off by default.
        kwargs: the model's constructor arguments (`model.backbone_kwargs`). For ResNet-style timm models
            `cifar_stem: true` swaps in a 3x3 stride-1 first conv and drops the max-pool, the usual change
            for 32x32 images (He et al. 2016, sec. 4.2). A ViT (`vit_tiny_patch16_224`) takes small images with
            `img_size` and `patch_size` (8 and 2 for 8 px digits); views of several sizes (multi-crop) also need
            `dynamic_img_size: true`.
        view_shapes: the shapes of the views the net will see (`ViewGroup.shape`); a patch-embedding model is
            checked against them, since a wrong patch size would otherwise fail deep in its first forward.
    """
    dims, in_chans = info.sample_dims, info.channels
    entry = BACKBONES.get(name)
    if entry is not None:
        if entry.dims != dims:
            raise ConfigError(
                f"model.backbone: {name!r} takes {entry.dims}-D samples but {info.name!r} gives "
                f"{info.shape} ({dims}-D): pick one of {', '.join(available_backbones(dims)[:8]) or 'none registered'}"
            )
        if pretrained:
            raise ConfigError(
                f"model.backbone={name!r} is a local net with no pretrained weights: set pretrained false"
            )
        if "info" in inspect.signature(entry.factory).parameters:
            kwargs["info"] = info
        return _construct(entry.factory, name, in_chans=in_chans, **kwargs)
    if dims != 2 or not timm.is_model(name):
        close = difflib.get_close_matches(name, available_backbones(dims), n=3, cutoff=0.6)
        where = "see timm.list_models() or use small_cnn" if dims == 2 else f"{dims}-D backbones are registered ones"
        hint = f"did you mean {', '.join(close)}?" if close else where
        raise ConfigError(f"model.backbone: unknown backbone {name!r}; {hint}")
    cifar_stem = kwargs.pop("cifar_stem", False)
    model = _construct(timm.create_model, name, name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs)
    if cifar_stem:
        _use_cifar_stem(model, name, in_chans)
    _check_patches(model, name, view_shapes or [info.shape])
    return model


def _check_patches(model: nn.Module, name: str, view_shapes: Sequence[tuple[int, ...]]) -> None:
    """A ViT-style model (timm's `patch_embed`) fits the views: its patches tile every view, and it is built for
    the views' size, or for any size with `dynamic_img_size`."""
    embed = getattr(model, "patch_embed", None)
    if embed is None or not hasattr(embed, "patch_size") or not hasattr(embed, "img_size"):
        return
    patch, built = tuple(embed.patch_size), tuple(embed.img_size)
    sizes = sorted({tuple(shape[-2:]) for shape in view_shapes}, reverse=True)
    dynamic = getattr(model, "dynamic_img_size", False)
    if not dynamic and len(sizes) > 1:
        raise ConfigError(
            f"model.backbone_kwargs.dynamic_img_size: {name!r} gets views of {len(sizes)} sizes "
            f"({', '.join(f'{h}x{w}' for h, w in sizes)} px, multi-crop); set dynamic_img_size: true"
        )
    if not dynamic and sizes[0] != built:
        raise ConfigError(
            f"model.backbone_kwargs.img_size: {name!r} is built for {built[0]}x{built[1]} px images but the views "
            f"are {sizes[0][0]}x{sizes[0][1]} px; set img_size: {sizes[0][0]}"
        )
    for size in sizes:
        if size[0] % patch[0] or size[1] % patch[1]:
            raise ConfigError(
                f"model.backbone_kwargs.patch_size: {name!r} cuts {patch[0]}x{patch[1]} px patches, which do not tile "
                f"the {size[0]}x{size[1]} px views; give a patch_size that divides every view size"
            )


def _construct(factory: Callable[..., nn.Module], name: str, *args, **kwargs) -> nn.Module:
    try:
        return factory(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model.backbone_kwargs: {name!r} does not accept these arguments ({err})") from err


def _use_cifar_stem(model: nn.Module, name: str, in_chans: int) -> None:
    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ConfigError(
            f"model.backbone_kwargs.cifar_stem needs a ResNet-style model with conv1 and maxpool; {name!r} has neither"
        )
    model.conv1 = nn.Conv2d(in_chans, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
