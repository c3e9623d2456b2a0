"""SequenceViews: per-sample random windows, normalisation, noise, and refusals that name the key."""

from __future__ import annotations

import pytest
import torch

from contrastlab.augment.sequence import SequenceViews
from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError

CLIPS = DataInfo("clips", "audio", (2, 100), 3, mean=(1.0, 2.0), std=(2.0, 4.0))


def test_each_sample_gets_its_own_window_of_its_own_sequence():
    torch.manual_seed(0)
    views = SequenceViews(num_views=2, crop=40, normalize="none")
    views.bind(CLIPS)
    ramp = torch.arange(100.0).expand(64, 2, 100).clone() + 1000 * torch.arange(64.0)[:, None, None]
    first, second = views(ramp)
    assert first.shape == second.shape == (64, 2, 40)
    starts = first[:, 0, 0] - 1000 * torch.arange(64.0)
    assert torch.equal(first - first[:, :, :1], torch.arange(40.0).expand(64, 2, 40))  # contiguous, channels aligned
    assert 0 <= starts.min() and starts.max() <= 60 and len(starts.unique()) > 20  # drawn per sample
    assert not torch.equal(first, second)
    assert torch.equal(views.eval_view(ramp), ramp)  # evaluation sees the whole sequence
    assert views.view_info(CLIPS).shape == (2, 40) and SequenceViews().view_info(CLIPS) is CLIPS


def test_normalisations_and_noise():
    torch.manual_seed(0)
    x = 3 + 5 * torch.randn(8, 2, 100)
    instance = SequenceViews(normalize="instance")
    instance.bind(CLIPS)
    (view,) = instance(x)
    assert torch.allclose(view.mean(-1), torch.zeros(8, 2), atol=1e-5)
    assert torch.allclose(view.std(-1), torch.ones(8, 2))
    channel = SequenceViews(normalize="channel", gain_db=(-6.0, -6.0), noise_std=0.5)
    channel.bind(CLIPS)
    (noisy,) = channel(x)
    mean, std = torch.tensor([1.0, 2.0])[:, None], torch.tensor([2.0, 4.0])[:, None]
    clean = (x * 10 ** (-6 / 20) - mean) / std
    assert 0.45 < (noisy - clean).std() < 0.55
    assert torch.allclose(channel.eval_view(x), (x - mean) / std)


@pytest.mark.parametrize(
    ("kwargs", "info", "message"),
    [
        ({"crop": 200}, CLIPS, "model.augment.crop=200 needs fixed-length samples of at least that length"),
        ({"crop": 20}, DataInfo("ragged", "series", (1, 0), 2), "needs fixed-length samples"),
        ({"normalize": "instance"}, DataInfo("ragged", "series", (1, 0), 2), "would count the padding"),
        ({"normalize": "channel"}, DataInfo("raw", "audio", (1, 50), 2), "gives no channel statistics"),
    ],
)
def test_views_that_do_not_fit_the_data_are_refused_at_bind(kwargs, info, message):
    with pytest.raises(ConfigError, match=message):
        SequenceViews(**kwargs).bind(info)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_views": 0}, "num_views must be >= 1"),
        ({"gain_db": (3.0, -3.0)}, "gain_db must be \\[low, high\\]"),
        ({"noise_std": -1.0}, "noise_std must be >= 0"),
        ({"normalize": "minmax"}, "normalize must be one of instance, channel, none"),
    ],
)
def test_bad_keys_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SequenceViews(**kwargs)
