"""Speed and memory options of a method, kept out of `base.py`: GradCache, channels-last and a compiled backbone.

Their measured effect on CPU (and, when a GPU is lent, on CUDA) is in benchmarks/README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from contrastlab.contract import ViewGroup, describe_groups, multi_size
from contrastlab.errors import ConfigError
from contrastlab.modules.core.gradcache import grad_cache_step

if TYPE_CHECKING:
    from contrastlab.contract import Batch


def check_grad_cache(method: type, chunk: int, groups: tuple[ViewGroup, ...] = ()) -> None:
    if chunk < 0:
        raise ConfigError(f"model.init_args.grad_cache_chunk must be >= 0 (0 turns GradCache off), got {chunk}")
    if chunk and multi_size(groups):
        # the cached feature gradients are per view of one batch of equal views; multi-crop's losses
        # (SwAV's, DINO's) have no in-batch negatives for GradCache to spread over chunks anyway
        raise ConfigError(
            f"model.init_args.grad_cache_chunk: GradCache encodes views of one size, but the pipeline makes "
            f"{describe_groups(groups)} (multi-crop); remove grad_cache_chunk or local_crops"
        )
    if chunk and not getattr(method, "supports_grad_cache", False):
        raise ConfigError(
            f"model.init_args.grad_cache_chunk: {method.__name__} does not support GradCache, which applies to "
            "losses over in-batch negatives with one backbone per view (SimCLR, SupCon, DCL, NCL); remove the key"
        )
    towers = getattr(method, "grad_cache_towers", None)
    if chunk and method.encode.__qualname__ != "ContrastiveModule.encode" and towers is None:
        raise ConfigError(
            f"model.init_args.grad_cache_chunk: {method.__name__} encodes its views its own way (`encode`), which "
            "GradCache's chunked backbone passes would bypass; remove the key"
        )


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    if isinstance(x, Tensor) and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *args[1:])


def wants_channels_last(backbone: nn.Module, view_shape: tuple[int, ...]) -> bool:
    """channels_last's default: on for a net of 2-D convolutions over images, where NHWC convolutions measured
    faster on CUDA and on oneDNN CPUs alike (1.1-2.6x, docs/benchmarks/speed.md); off for the rest (series,
    volumes, transformers), which it would not speed up."""
    return len(view_shape) == 3 and any(isinstance(m, nn.Conv2d) for m in backbone.modules())


def apply(backbone: nn.Module, channels_last: bool) -> None:
    """channels_last: weights and 4-D inputs in NHWC order (faster convolutions on recent GPUs and oneDNN).

    The compile option is applied later, by `compile_once` from the module's `configure_model`: momentum
    methods deep-copy the backbone in their constructor, and a copy of a compiled module would keep calling
    the original's compiled forward.
    """
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
        backbone.register_forward_pre_hook(_to_channels_last)


def compile_once(backbone: nn.Module) -> None:
    """`torch.compile` the backbone in place (its state_dict keys stay the same, so checkpoints do not change)."""
    if getattr(backbone, "_compiled_call_impl", None) is None:
        backbone.compile()


def grad_cache_loss(module: nn.Module, batch: Batch) -> tuple[Tensor, list[Tensor]]:
    """A method's loss with GradCache: its encoders run in chunks, its `contrastive_loss` sees the full batch.

    `module` is the ContrastiveModule whose `training_step` calls this.

    The encoders are the backbone, one per view, or what the method's `grad_cache_towers(batch)` names (a
    two-tower method overriding `encode`: `([backbone, text_tower], [view, tokens])`). Every trained parameter but
    the online probe's takes part (the probe trains on its own loss); see `modules/core/gradcache.py` for how the
    gradient reaches them, BatchNorm, random state and DDP.
    """
    probe = set(module.probe.parameters()) if module.probe is not None else set()
    params = [p for p in module.parameters() if p.requires_grad and p not in probe]
    towers = getattr(module, "grad_cache_towers", None)
    encoders, views = towers(batch) if towers is not None else (module.backbone, batch["views"])
    return grad_cache_step(
        encoders,
        views,
        lambda feats: module.contrastive_loss(feats, batch),
        params,
        module.hparams.grad_cache_chunk,
    )
