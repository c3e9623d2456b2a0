"""Audio views on pure tones, impulses and noise: each op does what it is asked, per sample, with its probability;
the log-mel front end matches librosa."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastlab.augment import audio as A
from contrastlab.contract import DataInfo

RATE = 16000


def tones(freqs, seconds: float = 0.5, rate: int = RATE) -> torch.Tensor:
    """(len(freqs), 1, T) unit-amplitude sines."""
    t = torch.arange(int(seconds * rate)) / rate
    return torch.stack([torch.sin(2 * math.pi * f * t) for f in freqs]).unsqueeze(1)


def level_db(x: torch.Tensor, freq: float, rate: int = RATE) -> torch.Tensor:
    """(B,) magnitude in dB of each sample's spectrum at `freq` (Hann-windowed)."""
    window = torch.hann_window(x.shape[-1], periodic=False)
    spectrum = torch.fft.rfft(x[:, 0] * window).abs()
    k = round(freq * x.shape[-1] / rate)
    return 20 * torch.log10(spectrum[:, k - 2 : k + 3].amax(dim=-1))


def peak_hz(x: torch.Tensor, rate: int = RATE) -> torch.Tensor:
    """(B,) frequency of each sample's strongest component, refined by parabolic interpolation."""
    spectrum = torch.fft.rfft(x[:, 0] * torch.hann_window(x.shape[-1])).abs().log()
    k = spectrum[:, 1:-1].argmax(dim=-1) + 1
    a, b, c = (spectrum.gather(1, (k + d)[:, None])[:, 0] for d in (-1, 0, 1))
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / x.shape[-1]


def test_filters_attenuate_beyond_the_asked_cutoff_and_pass_below_it():
    x = tones([300.0, 3000.0]).repeat(2, 1, 1)  # samples: 300 Hz, 3 kHz, 300 Hz, 3 kHz
    cutoff = torch.tensor([1000.0, 1000.0, 1000.0, 1000.0])
    low, high = torch.tensor([False, False, True, True]), torch.tensor([False, False, True, True])
    y = A.butterworth_filter(x, cutoff, high, RATE)
    loss = level_db(x, 300) - level_db(y, 300)
    loss_3k = level_db(x, 3000) - level_db(y, 3000)
    assert loss[0] < 0.1 and loss_3k[1] > 30  # low-pass at 1 kHz: 300 Hz through, 3 kHz down > 30 dB
    assert loss[2] > 30 and loss_3k[3] < 0.1  # high-pass at 1 kHz: the reverse
    at_cutoff = A.butterworth_filter(tones([1000.0]), torch.tensor([1000.0]), ~low[:1], RATE)
    assert float(level_db(tones([1000.0]), 1000) - level_db(at_cutoff, 1000)) == pytest.approx(3.0, abs=0.3)


@pytest.mark.parametrize("cents", [-700.0, -300.0, 250.0, 700.0])
def test_pitch_shift_moves_the_frequency_by_the_asked_cents_and_keeps_the_duration(cents):
    x = tones([440.0, 1000.0], seconds=0.5)
    y = A.pitch_shift(x, torch.tensor([cents, -cents]), RATE)
    assert y.shape == x.shape
    expected = torch.tensor([440.0 * 2 ** (cents / 1200), 1000.0 * 2 ** (-cents / 1200)])
    measured_cents = 1200 * torch.log2(peak_hz(y) / expected)
    assert measured_cents.abs().max() < 15  # within 15 cents of the asked shift, each sample its own
    assert y[:, :, 800:-800].abs().amax(dim=-1).min() > 0.5  # the tone lasts the whole clip


def test_gain_is_in_decibels_and_drawn_per_sample_in_its_range():
    x = torch.randn(4000, 1, 64)
    db = torch.tensor([-20.0, -6.0, -1.0, 0.0]).repeat(1000)
    ratio = 20 * torch.log10(A.gain(x, db).norm(dim=-1) / x.norm(dim=-1)).flatten()
    assert torch.allclose(ratio, db, atol=1e-4)
    drawn = 20 * torch.log10(A.Gain(p=1.0).apply(x).norm(dim=-1) / x.norm(dim=-1)).flatten()
    assert drawn.min() >= -20 - 1e-4 and drawn.max() <= -1 + 1e-4
    assert drawn.std() == pytest.approx(19 / math.sqrt(12), rel=0.1)  # uniform over [-20, -1]: each sample its own


def test_probabilities_hold_statistically_and_samples_and_views_draw_independently():
    torch.manual_seed(0)
    x = torch.ones(20000, 1, 8)
    first, second = A.PolarityInversion(0.8)(x)[:, 0, 0] < 0, A.PolarityInversion(0.8)(x)[:, 0, 0] < 0
    n = len(x)
    sigma = math.sqrt(0.8 * 0.2 / n)
    assert abs(first.float().mean() - 0.8) < 4 * sigma and abs(second.float().mean() - 0.8) < 4 * sigma
    both = (first & second).float().mean()
    assert abs(both - 0.64) < 4 * math.sqrt(0.64 * 0.36 / n)  # the two draws are independent
    # neighbouring samples are not correlated either
    lagged = np.corrcoef(first[:-1].float().numpy(), first[1:].float().numpy())[0, 1]
    assert abs(lagged) < 4 / math.sqrt(n)
    views = A.CLMRViews(sample_rate=RATE, strength=0.5, pitch_p=0.0, reverb_p=0.0)
    probabilities = {type(op).__name__: op.p for op in views.chain}
    assert probabilities == {"PolarityInversion": 0.4, "Noise": 0.005, "Gain": 0.15, "HighLowPass": 0.4, "Delay": 0.15}
    assert A.CLMRViews(sample_rate=RATE, strength=2.0).chain[0].p == 1.0  # clamped


def test_delay_adds_an_echo_at_the_asked_time_without_wrap_around():
    x = torch.zeros(2, 1, 8000)
    x[0, 0, 0] = 1.0  # an impulse at the start
    x[1, 0, -10:] = 1.0  # a burst at the very end: must not reappear at the start
    y = A.delay(x, torch.tensor([3200.0, 3200.0]), volume=0.5)  # 200 ms at 16 kHz
    assert float(y[0, 0, 0]) == pytest.approx(1 / 1.5) and float(y[0, 0, 3200]) == pytest.approx(0.5 / 1.5)
    assert y[0, 0, 1:3200].abs().max() == 0 and y[0, 0, 3201:].abs().max() == 0
    assert y[1, 0, :-10].abs().max() == 0
    ms = A.Delay(RATE, p=1.0).apply(torch.zeros(300, 1, 8000).index_fill_(-1, torch.tensor([0]), 1.0))
    echo_ms = (ms[:, 0, 1:] != 0).float().argmax(dim=-1) + 1
    assert echo_ms.min() >= 200 * 16 and echo_ms.max() <= 450 * 16 and echo_ms.unique().numel() > 100


def test_reverb_spreads_an_impulse_over_its_rt60_without_wrap_around():
    x = torch.zeros(2, 1, 16000)
    x[:, 0, 8000] = 1.0
    y = A.reverb(x, torch.tensor([0.1, 0.6]), torch.tensor([1.0, 1.0]), RATE)
    assert y[:, :, :8000].abs().max() < 1e-7  # nothing before the impulse: linear, not circular, convolution
    tail = y[:, 0, 8000 + 800 : 8000 + 1600].pow(2).sum(-1)  # energy 50-100 ms after the impulse
    assert tail[1] > 10 * tail[0]  # the longer room rings longer
    late = y[0, 0, 8000 + 3200 :].abs().max()  # 200 ms after, a 100 ms room has decayed by > 60 dB
    assert late < 1e-3 * y[0, 0, 8000:].abs().max()


def test_noise_is_relative_to_each_samples_level():
    x = tones([440.0] * 2) * torch.tensor([1.0, 0.01]).view(2, 1, 1)
    noise = A.add_noise(x, torch.tensor([0.1, 0.1])) - x
    assert float(noise[0].std() / noise[1].std()) == pytest.approx(100, rel=0.1)


def test_logmel_matches_librosa():
    import librosa  # the dev extra's: a missing one fails here, as any missing dependency does

    for htk in (False, True):
        ours = A.mel_filterbank(22050, 1024, 64, f_min=20, f_max=8000, htk=htk).numpy()
        theirs = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=64, fmin=20, fmax=8000, htk=htk)
        assert np.abs(ours - theirs).max() < 1e-6 * max(1.0, np.abs(theirs).max()) + 1e-7
    wave = torch.randn(2, 1, 8000, generator=torch.Generator().manual_seed(0)) * torch.linspace(0, 1, 8000)
    front = A.LogMel(16000, n_fft=512, hop_length=128, n_mels=40)
    ours = front(wave)
    assert ours.shape == (2, 1, 40, front.frames(8000))
    # librosa's own STFT compiles with numba first, which is slow: the reference power spectrum is numpy's, framed
    # as librosa.stft frames it (centred, zero-padded, periodic Hann), through librosa's filterbank and dB
    filters = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    for b in range(2):
        padded = np.pad(wave[b, 0].numpy().astype(np.float64), 256)
        frames = np.stack([padded[i : i + 512] * window for i in range(0, len(padded) - 511, 128)], axis=1)
        power = np.abs(np.fft.rfft(frames, axis=0)) ** 2
        theirs = librosa.power_to_db(filters @ power, ref=1.0, amin=1e-10, top_db=80.0)
        assert np.abs(ours[b, 0].numpy() - theirs).max() < 0.05  # dB


def test_specaugment_masks_bands_and_mixup_mixes_in_the_linear_domain():
    x = torch.randn(64, 1, 40, 50)
    masked = A.SpecAugment(freq_width=6, time_width=8, freq_masks=1, time_masks=1)(x)
    changed = masked != x
    rows, cols = changed.any(dim=-1)[:, 0], changed.any(dim=-2)[:, 0]
    assert 0 < rows.sum(-1).max() and (rows.sum(-1) <= 40).all() and changed.any()
    full_rows = changed.all(dim=-1)[:, 0].sum(-1)  # a frequency band masks whole rows
    assert full_rows.max() <= 6 and full_rows.max() > 0 and cols.any()
    quiet, loud = torch.full((1, 1, 4, 4), -60.0), torch.full((1, 1, 4, 4), 0.0)
    mixed = A.LogMixup(ratio=0.5, p=1.0)(torch.cat([quiet, loud]))
    assert (mixed[0] > -60).all() and (mixed[0] <= 0).all() and (mixed[1] < 0).all()


def test_views_have_the_shape_view_info_gives_and_the_eval_view_is_deterministic():
    info = DataInfo("clips", "audio", (1, 8000), 10, sample_rate=8000.0, views="contrastlab.augment.audio.CLMRViews")
    x = torch.randn(4, 1, 8000)
    clmr = A.CLMRViews.for_data(info)
    clmr_crop = A.CLMRViews(crop_seconds=0.5)
    clmr_crop.bind(info)
    assert clmr.view_info(info) == info and clmr_crop.view_info(info).shape == (1, 4000)
    views = clmr_crop(x)
    assert len(views) == 2 and views[0].shape == (4, 1, 4000) and not torch.equal(views[0], views[1])
    assert torch.equal(clmr_crop.eval_view(x), x[..., 2000:6000])
    spectra = A.LogMelViews(n_mels=32, crop_seconds=0.5)
    spectra.bind(info)
    shape = spectra.view_info(info).shape
    assert shape == (1, 32, 1 + 4000 // 128) and spectra(x)[0].shape == (4, *shape)
    assert torch.equal(spectra.eval_view(x), spectra.eval_view(x)) and spectra.eval_view(x).shape == (4, *shape)
