"""The arithmetic behind the benchmarks' MFU and the nets they compare: FLOP counts by hand, peaks, identical nets."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import flops  # noqa: E402
import throughput  # noqa: E402


def test_flop_counter_counts_a_conv_and_a_linear_as_two_flops_per_multiply_add():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 outputs x 3 inputs x 9 taps per output pixel, 16 x 16 pixels, 2 images
    assert flops.count_flops(lambda: conv(torch.zeros(2, 3, 16, 16))) == 2 * (2 * 16 * 16 * 8 * 3 * 9)
    linear = nn.Linear(10, 4)
    x = torch.zeros(5, 10, requires_grad=True)
    # forward 5x10x4 multiply-adds; backward: grad of input and of weight, the same again each
    assert flops.count_flops(lambda: linear(x).sum().backward()) == 3 * 2 * 5 * 10 * 4


def test_mfu_is_achieved_over_peak():
    # 1e12 FLOPs per step in 0.5 s is 2 TFLOP/s; on a 989 TFLOP/s chip that is 0.2 %
    assert flops.mfu(1e12, 0.5, 989.0) == pytest.approx(2 / 989)
    assert flops.mfu(1e12, 0.5, None) is None


def test_peaks_by_device_name():
    assert flops.peak_tflops("NVIDIA H200", "bf16") == 989.0
    assert flops.peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert flops.peak_tflops("NVIDIA H200", "tf32") == 494.0
    assert flops.peak_tflops("Intel Xeon", "bf16") is None


@pytest.mark.parametrize("net", ["small_cnn", "resnet18"])
def test_the_two_sides_of_the_peer_benchmark_build_the_same_net(net):
    from contrastlab.contract import DataInfo
    from contrastlab.modules.core.backbones import create_backbone

    grey = DataInfo("digits", "image", (1, throughput.SIZE, throughput.SIZE))
    ours = create_backbone(net, grey, **(throughput.SMALL_CNN if net == "small_cnn" else {"cifar_stem": True}))
    theirs = throughput.lightly_net(net)
    shape = (1, 1, throughput.SIZE, throughput.SIZE)
    assert flops.conv_net_macs(ours, shape) == flops.conv_net_macs(theirs, shape)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_time_to_target_is_the_first_validation_at_or_above_it():
    assert throughput.time_to([(1.0, 0.80), (2.5, 0.86), (4.0, 0.90)], 0.85) == 2.5
    assert throughput.time_to([(1.0, 0.80)], 0.85) is None
