"""Backbones for medical data: the 3-D ResNet through the registry, timm's 2-D models on grey images."""

from __future__ import annotations

import pytest
import torch

from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules.core.backbones import available_backbones, create_backbone

VOLUME = DataInfo("vol", "volume", (1, 16, 16, 16), 2)
GREY = DataInfo("grey", "image", (1, 28, 28), 2)


def test_the_3d_resnet_is_registered_for_volumes_only():
    assert {"resnet3d", "resnet3d_10", "resnet3d_18"} <= set(available_backbones(dims=3))
    net = create_backbone("resnet3d_10", VOLUME, widths=(4, 8, 8, 16))
    assert net.num_features == 16 and net(torch.randn(2, 1, 16, 16, 16)).shape == (2, 16)
    large = create_backbone("resnet3d", VOLUME, layers=(1, 1), widths=(4, 8), stem="large")
    assert large(torch.randn(2, 1, 16, 16, 16)).shape == (2, 8)
    with pytest.raises(ConfigError, match="takes 3-D samples"):
        create_backbone("resnet3d_10", GREY)
    with pytest.raises(ConfigError, match="one per stage"):
        create_backbone("resnet3d", VOLUME, layers=(1, 1), widths=(4,))


def test_timm_models_take_one_channel_grey_images():
    net = create_backbone("resnet18", GREY, cifar_stem=True)
    assert net.conv1.in_channels == 1 and net(torch.randn(2, 1, 28, 28)).shape == (2, 512)
    with pytest.raises(ConfigError, match="did you mean resnet3d_18"):  # timm has no 3-D nets
        create_backbone("resnet18", VOLUME)
