"""The registry of local backbones: `@register_backbone(name, dims=...)` makes a net constructible by name.

Every file of this package registers its nets with the decorator when imported (the package imports them all);
`contrastlab.modules.core.backbones.create_backbone` looks a name up here before timm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class RegisteredBackbone:
    factory: Callable[..., nn.Module]
    dims: int  # the sample rank it takes, channels aside


BACKBONES: dict[str, RegisteredBackbone] = {}


def register_backbone(name: str | None = None, dims: int = 2):
    """Decorator: make a class or function that builds an nn.Module (with `num_features`) a backbone by name.

    The same factory registered again (a module imported twice) is fine; another one under a taken name is not.
    """

    def register(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or factory.__name__
        known = BACKBONES.get(key)
        if known is not None and known.factory.__qualname__ != factory.__qualname__:
            raise ValueError(f"backbone {key!r} is already registered by {known.factory.__module__}")
        BACKBONES[key] = RegisteredBackbone(factory, dims)
        return factory

    return register
