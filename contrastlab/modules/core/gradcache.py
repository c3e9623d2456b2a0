"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

A loss over in-batch negatives needs every embedding of the batch at once, so a plain step keeps the
backbone's activations for the whole batch. GradCache cuts the step at the backbone features:

1. encode the views chunk by chunk without a graph, keeping only the features (B x D) and, for each
   chunk, the random state it started from;
2. compute the method's loss (projector, cross-rank gathering and loss, exactly as without GradCache) on
   the full batch of features as leaves, and its gradient with respect to them (the "cache") and to the
   projector's parameters;
3. encode each chunk again with a graph, from the same random state, and back-propagate its part of the
   cache, one chunk at a time: peak memory is one chunk's activations plus the features.

The parameter gradients are summed in a buffer with `torch.autograd.grad` (no hooks fire, nothing touches
`.grad`) and handed to autograd through `_CachedGradients`, a function whose output is the loss value and
whose backward returns the buffer. So under Lightning's automatic optimisation the step returns a loss as
usual, Lightning's backward (with any loss scaling or gradient-accumulation division: the buffer is
multiplied by the incoming gradient) accumulates each parameter's gradient once, and under DDP each
parameter's gradient is all-reduced once, in that backward, like a step without GradCache.

What matches the full batch, and what does not:
- Random state: each chunk's second pass replays the CPU and CUDA generator states its first pass began
  with (inside `torch.random.fork_rng`, so the stream continues after the step as if each chunk had run
  once), so dropout masks and any random op in the backbone are the same in both passes. Augmentation runs
  before the step (`on_after_batch_transfer`), so the views are fixed anyway.
- BatchNorm normalises each chunk with the chunk's own statistics, as DDP without `sync_batchnorm`
  normalises each device's batch: gradients equal a full-graph step that encodes the same chunks (tested),
  and equal the unchunked step for backbones without batch statistics (tested in float64).
- BatchNorm running statistics are updated once per chunk in the first pass, with the momentum m lowered
  to 1 - (1 - m)^(1/K) over K chunks, so that the old statistics keep the weight (1 - m) that one update
  per step gives them; the second pass saves and restores them, so they are not updated twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

LossOfFeatures = Callable[[list[Tensor]], Tensor]


def chunk_slices(batch_size: int, chunk: int) -> list[slice]:
    return [slice(start, min(start + chunk, batch_size)) for start in range(0, batch_size, chunk)]


def _devices(x: Tensor) -> list[int]:
    return [x.device.index or 0] if x.device.type == "cuda" else []


def _rng_state(devices: list[int]) -> tuple[Tensor, list[Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(state: tuple[Tensor, list[Tensor]], devices: list[int]) -> None:
    torch.set_rng_state(state[0])
    for device, cuda_state in zip(devices, state[1]):
        torch.cuda.set_rng_state(cuda_state, device)


def _batchnorms(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats and m.training]


@contextmanager
def _momentum_per_chunk(encoder: nn.Module, chunks: int) -> Iterator[None]:
    """K running-statistics updates per step that weigh the old statistics as one update would."""
    norms = [m for m in _batchnorms(encoder) if m.momentum is not None]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1 - (1 - m.momentum) ** (1 / chunks)
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


@contextmanager
def _frozen_running_stats(encoder: nn.Module) -> Iterator[None]:
    """Running statistics (and batch counters) as they were on entry: the second pass must not update them."""
    buffers = [b for m in _batchnorms(encoder) for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
    saved = [b.clone() for b in buffers if b is not None]
    try:
        yield
    finally:
        for b, value in zip([b for b in buffers if b is not None], saved):
            b.copy_(value)


class _CachedGradients(torch.autograd.Function):
    """Output: the loss value. Backward: the cached gradient of every parameter, times the incoming gradient."""

    @staticmethod
    def forward(ctx, value: Tensor, grads: Sequence[Tensor], *params: Tensor) -> Tensor:
        ctx.grads = grads
        return value.detach().clone()

    @staticmethod
    def backward(ctx, upstream: Tensor):
        return (None, None, *(g * upstream.to(g.dtype) for g in ctx.grads))


ViewInput = Tensor | dict[str, Tensor]


def _rows(view: ViewInput) -> int:
    return next(iter(view.values())).shape[0] if isinstance(view, dict) else view.shape[0]


def _encode(encoder: nn.Module, view: ViewInput, part: slice) -> Tensor:
    """One chunk through its encoder: a tensor view positionally, a dict of tensors (tokens) as keyword arguments."""
    if isinstance(view, dict):
        return encoder(**{k: v[part] for k, v in view.items()})
    return encoder(view[part])


def grad_cache_step(
    encoder: nn.Module | Sequence[nn.Module],
    views: Sequence[ViewInput],
    loss_of_features: LossOfFeatures,
    params: Sequence[nn.Parameter],
    chunk: int,
) -> tuple[Tensor, list[Tensor]]:
    """One training step's loss, encoding `views` in chunks of `chunk` samples; see the module docstring.

    Args:
        encoder: what maps one view chunk to features (the backbone), or one encoder per view (a two-tower
            method: the sample's backbone for its view, the text tower for the tokens).
        views: V inputs with B rows each: tensors (B, ...), or dicts of tensors (B, ...) that the view's encoder
            takes as keyword arguments (`input_ids`, `attention_mask`).
        loss_of_features: the method's loss from the V feature tensors (B, D): projector, gathering and loss.
        params: every trained parameter that the loss reaches (encoder, projector, ...): each gets a gradient,
            zero where the loss does not reach it, so that DDP sees every parameter ready.
        chunk: samples per chunk (per view).

    Returns:
        The loss, whose backward gives every parameter in `params` the full batch's gradient, and the
        features (detached), e.g. for the online probe.
    """
    encoders = list(encoder) if isinstance(encoder, Sequence) else [encoder] * len(views)
    if len(encoders) != len(views):
        raise ValueError(f"{len(encoders)} encoders for {len(views)} views: give one, or one per view")
    every = nn.ModuleList(list({id(e): e for e in encoders}.values()))  # BatchNorm handling covers all of them
    batch = _rows(views[0])
    slices = chunk_slices(batch, chunk)
    first = views[0] if not isinstance(views[0], dict) else next(iter(views[0].values()))
    devices = _devices(first)
    states: list[list[tuple[Tensor, list[Tensor]]]] = []
    feats: list[Tensor] = []
    with torch.no_grad(), _momentum_per_chunk(every, len(slices)):
        for enc, view in zip(encoders, views):
            states.append([])
            parts = []
            for part in slices:
                states[-1].append(_rng_state(devices))
                parts.append(_encode(enc, view, part))
            feats.append(torch.cat(parts))
    leaves = [f.detach().requires_grad_() for f in feats]
    with torch.enable_grad():
        loss = loss_of_features(leaves)
        found = torch.autograd.grad(loss, [*leaves, *params], allow_unused=True)
    cache, param_grads = found[: len(leaves)], list(found[len(leaves) :])
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, param_grads)]
    with _frozen_running_stats(every):
        for enc, view, view_cache, view_states in zip(encoders, views, cache, states):
            if view_cache is None:  # a view the loss does not use (e.g. SimCLR given V > 2)
                continue
            for part, state in zip(slices, view_states):
                with torch.random.fork_rng(devices=devices), torch.enable_grad():
                    _set_rng_state(state, devices)
                    out = _encode(enc, view, part)
                    chunk_grads = torch.autograd.grad(out, params, view_cache[part], allow_unused=True)
                for total, g in zip(grads, chunk_grads):
                    if g is not None:
                        total.add_(g)
    return _CachedGradients.apply(loss.detach(), grads, *params), [f.detach() for f in feats]
