"""The spectrogram's random resize crop: where each output bin reads from, per sample; and SpeechViews' shapes."""

from __future__ import annotations

import pytest
import torch

from contrastlab.augment.speech import SpecResizeCrop, SpeechViews, spec_resize_crop
from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError


def ramp(batch: int = 2, bins: int = 9, frames: int = 11) -> torch.Tensor:
    """(B, 1, F, T) whose value is the frequency bin index, plus frame / 100."""
    f = torch.arange(bins, dtype=torch.float32).view(bins, 1)
    t = torch.arange(frames, dtype=torch.float32).view(1, frames) / 100
    return (f + t).expand(batch, 1, bins, frames).clone()


def test_unit_scales_and_no_shift_return_the_input():
    x = torch.randn(3, 1, 8, 10)
    ones = torch.ones(3)
    assert torch.allclose(spec_resize_crop(x, ones, ones, torch.zeros(3)), x, atol=1e-5)


def test_frequency_scale_is_anchored_at_the_lowest_bin_per_sample():
    x = ramp()
    out = spec_resize_crop(x, torch.tensor([0.5, 1.0]), torch.ones(2), torch.zeros(2))
    # sample 0: bin f reads bin f / 2 (a formant shift up), the lowest bin stays; sample 1 is unchanged
    assert torch.allclose(out[0, 0, :, 0], torch.arange(9.0) * 0.5, atol=1e-5)
    assert torch.allclose(out[1], x[1], atol=1e-5)
    # above 1, reads past the top repeat the top bin
    up = spec_resize_crop(x, torch.tensor([2.0, 2.0]), torch.ones(2), torch.zeros(2))
    assert torch.allclose(up[0, 0, :5, 0], torch.arange(5.0) * 2, atol=1e-5) and torch.all(up[0, 0, 4:, 0] == 8)


def test_time_scale_and_shift_move_frames_around_the_centre():
    x = ramp()
    shifted = spec_resize_crop(x, torch.ones(2), torch.ones(2), torch.tensor([0.2, 0.0]))
    # a shift of 0.2 of half the 11 frames' span (10 steps) reads one frame later; the last frame repeats
    assert torch.allclose(shifted[0, 0, 0, :-1], x[0, 0, 0, 1:], atol=1e-5)
    zoomed = spec_resize_crop(x, torch.ones(2), torch.tensor([0.5, 0.5]), torch.zeros(2))
    # zoomed in twice: the centre frame stays, the first reads frame 2.5 (halfway between 2 and 3)
    assert torch.allclose(zoomed[0, 0, 0, 5], x[0, 0, 0, 5]) and torch.allclose(zoomed[0, 0, 0, 0], torch.tensor(0.025))


def test_resize_crop_passes_gradients_to_its_input():
    x = torch.randn(2, 1, 6, 7, requires_grad=True)
    spec_resize_crop(x, torch.tensor([0.9, 1.1]), torch.tensor([1.2, 0.8]), torch.tensor([0.1, -0.1])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_op_draws_per_sample_within_its_ranges_and_p_zero_is_identity():
    torch.manual_seed(0)
    x = ramp(batch=16)
    op = SpecResizeCrop(freq_scale=(0.5, 0.5), time_scale=(1.0, 1.0), time_shift=0.0)
    assert torch.allclose(op(x)[:, 0, :, 0], (torch.arange(9.0) * 0.5).expand(16, 9), atol=1e-5)
    assert torch.equal(SpecResizeCrop(p=0.0)(x), x)
    varied = SpecResizeCrop(freq_scale=(0.7, 1.3))(x)
    assert len({round(float(v), 4) for v in varied[:, 0, 4, 5]}) > 8  # a scale of its own for each sample
    with pytest.raises(ConfigError, match="freq_scale"):
        SpecResizeCrop(freq_scale=(1.2, 0.8))


def test_speech_views_are_log_mel_shaped_and_differ_while_the_eval_view_is_fixed():
    info = DataInfo("tones", "audio", (1, 4000), 2, sample_rate=8000.0)
    views = SpeechViews(n_mels=16, hop_length=128, pitch_p=0.0, reverb_p=0.0)
    views.bind(info)
    x = torch.randn(4, 1, 4000)
    shape = views.view_info(info).shape
    v1, v2 = views(x)
    assert shape == (1, 16, 1 + 4000 // 128) and v1.shape == (4, *shape) and not torch.equal(v1, v2)
    assert torch.equal(views.eval_view(x), views.eval_view(x))
