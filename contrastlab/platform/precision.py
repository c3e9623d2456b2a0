"""`trainer.precision: auto`, the default: bf16-mixed where the device runs it fast, else 32-true.

Fast means hardware bf16 arithmetic: a CUDA device that supports bf16 (Ampere and later), or a CPU with AVX-512
BF16 or AMX, where oneDNN's bf16 convolutions and matmuls measured 1.9-2x float32's step
(docs/benchmarks/speed.md). Elsewhere bf16 is emulated and slower, so float32 stays; so it does on a CPU for a
model with 3-D convolutions, whose bf16 steps diverged (a NaN loss within 3 steps on synthetic volumes). The
losses run in float32 under bf16 whatever is chosen (`modules/losses/precision.py`). The run records the choice
and why in its `precision` tag; any precision Lightning accepts can still be set by name.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.fabric.connector import _PRECISION_INPUT
from torch import nn

AUTO = "auto"
FAST_CPU_BF16 = {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def resolve(
    precision: _PRECISION_INPUT | None, accelerator: str | None = AUTO, model: nn.Module | None = None
) -> tuple[str, str]:
    """(the precision to train in, why): `auto` resolved for the accelerator the trainer will use and, when given,
    the model it will train."""
    if precision is None:
        return "32-true", "Lightning's default"
    if precision != AUTO:
        return str(precision), "set in the config"
    accelerator = str(accelerator or AUTO).lower()
    if accelerator in (AUTO, "gpu", "cuda") and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed", "auto: CUDA with bf16"
        return "32-true", "auto: this CUDA device has no fast bf16"
    if accelerator in (AUTO, "cpu"):
        fast = [name for flag, name in FAST_CPU_BF16.items() if flag in cpu_flags()]
        if fast and model is not None and any(isinstance(m, nn.Conv3d) for m in model.modules()):
            # 3-D ResNets on synthetic volumes reached NaN losses within 3 steps in bf16 on oneDNN (float32: never)
            return "32-true", "auto: 3-D convolutions, which diverged in bf16 on CPU"
        if fast:
            return "bf16-mixed", f"auto: CPU with {' and '.join(fast)}"
        return "32-true", "auto: this CPU has no AVX-512 BF16 or AMX"
    return "32-true", f"auto: accelerator {accelerator}"


class Trainer(L.Trainer):
    """Lightning's Trainer, whose `precision` also takes `auto` (the default): see the module's docstring."""

    def __init__(self, *args, precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO, **kwargs):
        chosen, _ = resolve(precision, kwargs.get("accelerator", AUTO))
        super().__init__(*args, precision=chosen, **kwargs)
