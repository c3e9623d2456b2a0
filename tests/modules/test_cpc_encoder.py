"""The CPC encoder: the paper's geometry, configurable strides, causal contexts, padding that changes nothing."""

from __future__ import annotations

import pytest
import torch

from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules.core.backbones import create_backbone
from contrastlab.modules.nets.cpc import CPCEncoder

AUDIO = DataInfo("speech", "audio", (1, 16000), 10, sample_rate=16000)


def test_the_papers_encoder_gives_one_step_per_160_samples_through_the_registry():
    net = create_backbone("cpc", AUDIO)
    assert isinstance(net, CPCEncoder) and net.downsampling == 160
    assert [(k, s) for k, s, _ in net.geometry] == [(10, 5), (8, 4), (4, 2), (4, 2), (4, 2)]
    assert (net.latent_dim, net.context_dim, net.num_features) == (512, 256, 256)
    z, c, mask = net.steps(torch.randn(1, 1, 16000))
    assert z.shape == (1, net.num_steps(16000), 512) and c.shape == (1, z.shape[1], 256) and mask is None
    assert 16000 // 160 - 2 <= z.shape[1] <= 16000 // 160  # about 100 steps a second
    assert net.pooled((z, c, mask)).shape == (1, 256)


@pytest.mark.parametrize(
    ("strides", "length", "steps"),
    [((4, 2, 2, 2, 2), 8000, 125), ((1, 1, 2), 150, 75), ((1,), 24, 24), ((3, 2), 100, 16)],
)
def test_configured_strides_fit_8khz_audio_and_short_series(strides, length, steps):
    info = DataInfo("s", "series", (3, length), 2)
    net = create_backbone("cpc", info, strides=strides, width=16, context_dim=8)
    z, c, _ = net.steps(torch.randn(2, 3, length))
    assert z.shape == (2, steps, 16) and c.shape == (2, steps, 8) == (2, net.num_steps(length), 8)


def test_contexts_are_causal_and_latents_local():
    """c_t reads z_1..z_t only: changing the input's second half leaves the first steps' contexts as they were."""
    torch.manual_seed(0)
    net = CPCEncoder(strides=(2, 2), width=8, context_dim=6).eval()
    x = torch.randn(1, 1, 64)
    y = x.clone()
    y[..., 40:] = torch.randn(1, 1, 24)
    (zx, cx, _), (zy, cy, _) = net.steps(x), net.steps(y)
    assert torch.allclose(cx[:, :8], cy[:, :8]) and not torch.allclose(cx[:, -1], cy[:, -1])
    assert torch.allclose(zx[:, :8], zy[:, :8])


@pytest.mark.parametrize("pool", ["context", "last", "latent"])
@pytest.mark.parametrize("norm", ["channel", "none"])
def test_a_padded_sequence_encodes_as_it_does_alone(pool, norm):
    torch.manual_seed(0)
    net = CPCEncoder(in_chans=2, strides=(3, 2), width=8, context_dim=5, pool=pool, norm=norm).eval()
    short, long = torch.randn(1, 2, 50), torch.randn(1, 2, 77)
    batch = torch.cat([torch.nn.functional.pad(short, (0, 27), value=3.0), long])  # odd padding: it must not leak
    mask = torch.arange(77)[None] < torch.tensor([[50], [77]])
    z, c, step_mask = net.steps(batch, mask)
    alone_z, alone_c, _ = net.steps(short)
    n = alone_z.shape[1]
    assert step_mask[0].sum() == n == net.num_steps(50) and step_mask[1].all()
    assert torch.allclose(z[0, :n], alone_z[0], atol=1e-6) and torch.allclose(c[0, :n], alone_c[0], atol=1e-6)
    assert torch.allclose(net(batch, mask)[0], net(short)[0], atol=1e-6)
    assert torch.allclose(net(batch, mask)[1], net(long)[0], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strides": (2, 2), "kernels": (4,)}, "give one kernel per stride"),
        ({"strides": (4,), "kernels": (2,)}, "kernel >= its stride"),
        ({"pool": "max"}, "pool must be one of context, last, latent"),
        ({"norm": "group"}, "norm must be channel, batch or none"),
    ],
)
def test_bad_geometry_is_one_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_backbone("cpc", AUDIO, **kwargs)


def test_nan_steps_are_masked_like_the_series_datamodules_padding():
    """The series DataModules pad (and mark missing values) with NaN: the encoder masks them without a mask."""
    torch.manual_seed(0)
    net = CPCEncoder(in_chans=2, strides=(1, 2), width=8, context_dim=5).eval()
    short = torch.randn(1, 2, 30)
    padded = torch.nn.functional.pad(short, (0, 10), value=float("nan"))
    z, c, mask = net.steps(padded)
    assert mask.sum() == net.num_steps(30) and torch.isfinite(c).all()
    assert torch.allclose(net(padded), net(short), atol=1e-6)
