"""Model FLOPs and MFU (model FLOPs utilisation): achieved FLOP/s of the model's own arithmetic over the chip's peak.

MFU counts the FLOPs the model needs (forward and backward of one training step, by `torch.utils.flop_counter`,
which counts a multiply-add as 2 FLOPs), not what the hardware executed (no recomputation, no padding), divided by
the step's wall time and the peak dense FLOP/s of the chip at the compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets, by a substring of torch.cuda.get_device_name().
# "tf32": float32 on tensor cores, as cuDNN runs float32 convolutions by default (torch.backends.cudnn.allow_tf32).
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "H100 SXM": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0},
    "H100": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "tf32": 183.0, "fp32": 91.6},
    "A10": {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2},
    "V100": {"bf16": 125.0, "tf32": 15.7, "fp32": 15.7},  # no bf16 or tf32 tensor cores: fp16's and fp32's figures
}


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """The chip's dense peak for `dtype` ("bf16", "tf32" or "fp32"), None when the chip is not in the table."""
    for key, peaks in PEAK_TFLOPS.items():  # longest keys first where one contains another (H100 SXM before H100)
        if key in device_name:
            return peaks[dtype]
    return None


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of everything `step` runs (forward and backward alike), counted by PyTorch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def mfu(flops_per_step: float, seconds_per_step: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1]: (flops / seconds) / (peak TFLOP/s x 1e12); None without a peak."""
    if peak is None or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / (peak * 1e12)


def conv_net_macs(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of `net` on a zero input of `shape` (FLOPs / 2)."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        flops = count_flops(lambda: net(torch.zeros(*shape)))
    net.train(was_training)
    return flops // 2
