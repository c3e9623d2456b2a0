"""The log-mel encoders: built by name for spectrogram views, their statistics pooling, and gradients."""

from __future__ import annotations

import pytest
import torch

from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules.core.backbones import create_backbone
from contrastlab.modules.nets.audio import StatsPool

SPECTRA = DataInfo("spectra", "audio", (1, 16, 12))  # the views' shape: (C, n_mels, frames)


def test_stats_pool_is_the_mean_and_the_population_std_over_time():
    x = torch.tensor([[[1.0, 3.0, 5.0, 7.0]]])
    assert torch.allclose(StatsPool("meanstd")(x), torch.tensor([[4.0, 5.0**0.5]]), atol=1e-4)
    assert torch.allclose(StatsPool("meanmax")(x), torch.tensor([[4.0, 7.0]]))
    assert StatsPool("mean")(x).shape == (1, 1) and StatsPool("meanstd").width(8) == 16
    with pytest.raises(ConfigError, match="pooling"):
        StatsPool("median")


@pytest.mark.parametrize(
    "name, kwargs", [("logmel_tdnn", {"widths": (8, 8), "kernels": (3, 1), "dilations": (2, 1)}),
                     ("logmel_cnn", {"widths": (4, 4), "hidden": 8})],
)  # fmt: skip
@pytest.mark.parametrize("pooling", ["meanstd", "meanmax", "mean"])
def test_logmel_nets_read_the_mel_bins_from_the_views_and_pass_gradients(name, kwargs, pooling):
    torch.manual_seed(0)
    net = create_backbone(name, SPECTRA, pooling=pooling, **kwargs)
    x = torch.randn(3, 1, 16, 12, requires_grad=True)
    out = net(x)
    assert out.shape == (3, net.num_features) and net.num_features == 8 * (1 if pooling == "mean" else 2)
    out.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_feature_norm_standardises_the_pooled_features_over_the_batch():
    net = create_backbone("logmel_tdnn", SPECTRA, widths=(8,), kernels=(3,), dilations=(1,))
    out = net(torch.randn(32, 1, 16, 12) * 5 + 3)
    assert torch.allclose(out.mean(0), torch.zeros(out.shape[1]), atol=1e-4)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(out.shape[1]), atol=1e-2)
    plain = create_backbone("logmel_tdnn", SPECTRA, widths=(8,), kernels=(3,), dilations=(1,), feature_norm=False)
    assert isinstance(plain.norm, torch.nn.Identity)


def test_mismatched_layer_lists_and_too_many_halvings_name_the_key():
    with pytest.raises(ConfigError, match="logmel_tdnn has 2 widths, 1 kernels"):
        create_backbone("logmel_tdnn", SPECTRA, widths=(8, 8), kernels=(3,), dilations=(1, 1))
    with pytest.raises(ConfigError, match="halve 16 mel bins to none"):
        create_backbone("logmel_cnn", SPECTRA, widths=(4,) * 5)


def test_input_norm_makes_the_net_blind_to_a_clips_fixed_colouring_of_each_band():
    torch.manual_seed(0)
    net = create_backbone("logmel_tdnn", SPECTRA, widths=(8,), kernels=(3,), dilations=(1,), input_norm=True).eval()
    x = torch.randn(2, 1, 16, 12)
    colouring = torch.randn(2, 1, 16, 1) * 10  # a microphone's gain per band, fixed over the clip
    assert torch.allclose(net(x + colouring), net(x), atol=1e-4)
    plain = create_backbone("logmel_tdnn", SPECTRA, widths=(8,), kernels=(3,), dilations=(1,)).eval()
    assert not torch.allclose(plain(x + colouring), plain(x), atol=1e-2)
