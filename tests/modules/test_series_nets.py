"""Series backbones: registered for (C, T) data, masked pooling, padding that changes nothing."""

from __future__ import annotations

import pytest
import torch

from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules.core.backbones import available_backbones, create_backbone

SERIES = DataInfo("series", "series", (3, 0))
TINY = {
    "fcn1d": {"widths": (8, 16, 8)},
    "resnet1d": {"widths": (8, 16, 16)},
    "inception_time": {"filters": 4, "depth": 6, "kernel": 12, "bottleneck": 4},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_padding_and_missing_steps_are_masked_out_of_the_features(name):
    torch.manual_seed(0)
    net = create_backbone(name, SERIES, **TINY[name]).eval()
    assert name in available_backbones(1)
    x = torch.randn(4, 3, 30)
    padded = torch.cat([x, torch.full((4, 3, 12), float("nan"))], dim=-1)
    with torch.no_grad():
        plain, masked = net(x), net(padded)
        given = net(torch.cat([x, torch.randn(4, 3, 12)], dim=-1), mask=torch.arange(42)[None, :] < 30)
    assert plain.shape == (4, net.num_features) and masked.isfinite().all()
    # FCN and ResNet zero masked steps before every conv: exactly the unpadded features; InceptionTime's
    # max-pool branch sees the zeros, so only nearly
    tolerance = 1e-5 if name != "inception_time" else 1e-2
    assert torch.allclose(plain, masked, atol=tolerance) and torch.allclose(masked, given, atol=1e-5)
    h, mask = net.timestamps(padded)
    assert h.shape[::2] == (4, 42) and mask.sum(1).tolist() == [30] * 4 and (h[..., 30:] == 0).all()
    x[1, :, 5] = float("nan")  # a missing step: finite features, and gradients train through the rest
    net.train()(x).sum().backward()
    assert all(p.grad is None or p.grad.isfinite().all() for p in net.parameters())


def test_a_series_backbone_refuses_images():
    with pytest.raises(ConfigError, match="'resnet1d' takes 1-D samples"):
        create_backbone("resnet1d", DataInfo("grey", "image", (1, 8, 8)))
