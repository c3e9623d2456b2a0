"""Audio views on the device: CLMR's chain on waveforms, batched, and log-mel spectrogram views.

Every op takes a float batch (B, C, T) on any device, draws its parameters per sample (augment/ops.py) and applies
them to the whole batch at once, with no Python loop; each is also a plain function (`gain(x, db)`, `pitch_shift`).

How the hard ones are batched:
- high-/low-pass: a Butterworth magnitude response (order 4, zero phase) multiplied into the rFFT of every
  sample at its own cut-off; the signal is zero-padded first, so the filter's tails do not wrap around.
- delay: a gather at t - d per sample, zeros before the echo starts (no wrap-around).
- pitch shift: a phase vocoder in the frequency domain. The STFT of the batch is resampled along frequency,
  bin k of sample b reading bin k / r_b, with each bin's instantaneous frequency (from its phase advance) scaled
  by r_b and integrated over frames; one inverse STFT. Every sample gets its own ratio; the duration stays.
- reverb: synthetic room impulse responses (exponentially decaying Gaussian noise, RT60 drawn per sample),
  convolved by one batched FFT of length T + L, mixed with the dry signal at a per-sample wet ratio.

`CLMRViews` is CLMR's chain (Spijkervet & Burgoyne 2021) with its probabilities; `strength` scales them all (for
a sweep) and each op's probability and range is its own argument. `LogMelViews` adds ops.py's spectrogram ops (our
log-mel front end, SpecAugment's masks, a log-mel mixup within the batch); its (C, n_mels, frames) views are images
to any 2-D backbone (timm's with in_chans=1; `view_info` tells the module their shape).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn

from contrastlab.augment.ops import (  # noqa: F401  (centre_crop, gain, the spectrogram ops: this module's ops too)
    LogMel,
    LogMixup,
    Range,
    SpecAugment,
    centre_crop,
    check_probability,
    check_views,
    chosen,
    gain,
    mel_filterbank,
    on_chosen,
    per_sample,
    random_crop,
    uniform,
)
from contrastlab.contract import ViewPipeline
from contrastlab.errors import ConfigError


def add_noise(x: Tensor, snr: Tensor) -> Tensor:
    """Gaussian noise whose std is `snr` (B,) times each sample's own std (CLMR's Noise)."""
    std = x.std(dim=tuple(range(1, x.ndim)), keepdim=True)
    return x + torch.randn_like(x) * std * per_sample(snr, x)


def butterworth_filter(x: Tensor, cutoff: Tensor, highpass: Tensor, sample_rate: float, order: int = 4) -> Tensor:
    """Zero-phase Butterworth low-pass (or high-pass where `highpass` (B,) is True) at `cutoff` (B,) Hz,
    applied in the frequency domain: |H(f)| = 1 / sqrt(1 + (f / fc)^(2 order)) (high-pass: fc / f)."""
    total = x.shape[-1]
    n = total + total // 2  # zero padding: the response's tails stay out of the signal instead of wrapping
    spectrum = torch.fft.rfft(x, n=n)
    freqs = torch.fft.rfftfreq(n, d=1.0 / sample_rate).to(x.device)
    ratio = freqs.view(1, -1) / cutoff.view(-1, 1).clamp(min=1e-3)
    ratio = torch.where(highpass.view(-1, 1), 1.0 / ratio.clamp(min=1e-6), ratio)
    response = torch.rsqrt(1 + ratio.pow(2 * order))
    shape = (x.shape[0], *([1] * (x.ndim - 2)), -1)
    return torch.fft.irfft(spectrum * response.view(shape).to(spectrum.dtype), n=n)[..., :total]


def delay(x: Tensor, samples: Tensor, volume: float = 0.5) -> Tensor:
    """x plus its echo `samples` (B,) later at `volume`, normalised by 1 + volume; silence before the echo
    starts, nothing wraps around from the end."""
    total = x.shape[-1]
    source = torch.arange(total, device=x.device).view(1, -1) - samples.view(-1, 1).long()
    echo = x.gather(-1, source.clamp(min=0).view(x.shape[0], *([1] * (x.ndim - 2)), total).expand_as(x))
    echo = echo * (source >= 0).view(x.shape[0], *([1] * (x.ndim - 2)), total).to(x.dtype)
    return (x + volume * echo) / (1 + volume)


def pitch_shift(x: Tensor, cents: Tensor, sample_rate: float, n_fft: int | None = None) -> Tensor:
    """Each sample's pitch moved by `cents` (B,) (1200 = an octave), its duration kept: a frequency-domain
    phase vocoder (see the module's docstring), rescaled to the input's RMS."""
    batch, total = x.shape[0], x.shape[-1]
    n_fft = n_fft or pitch_n_fft(sample_rate)
    n_fft = min(n_fft, 1 << max(4, (total - 1).bit_length() - 1))
    hop = n_fft // 4
    flat = x.reshape(-1, total).float()
    channels = flat.shape[0] // batch
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(flat, n_fft, hop, window=window, center=True, return_complex=True)  # (BC, F, N)
    bins = spec.shape[1]
    magnitude, phase = spec.abs(), spec.angle()
    expected = (2 * math.pi * hop / n_fft) * torch.arange(bins, device=x.device, dtype=flat.dtype).view(1, -1, 1)
    advance = torch.diff(phase, dim=-1, prepend=phase[..., :1]) - expected
    advance = advance - 2 * math.pi * torch.round(advance / (2 * math.pi))  # wrapped to [-pi, pi]
    instantaneous = expected + advance  # radians per hop of each bin, each frame
    ratio = torch.pow(2.0, cents.float() / 1200).repeat_interleave(channels).view(-1, 1)
    source = torch.arange(bins, device=x.device, dtype=flat.dtype).view(1, -1) / ratio  # (BC, F)
    low = source.floor().clamp(max=bins - 1)
    frac = (source - low).unsqueeze(-1)
    inside = (source <= bins - 1).unsqueeze(-1).to(flat.dtype)
    low = low.long().unsqueeze(-1).expand(-1, -1, spec.shape[-1])
    high = (low + 1).clamp(max=bins - 1)

    def read(values: Tensor) -> Tensor:
        return torch.lerp(values.gather(1, low), values.gather(1, high), frac)

    new_magnitude = read(magnitude) * inside
    new_rate = read(instantaneous) * ratio.unsqueeze(-1)
    start = phase.gather(1, low[..., :1])
    new_phase = start + torch.cumsum(torch.cat([torch.zeros_like(new_rate[..., :1]), new_rate[..., 1:]], -1), -1)
    shifted = torch.istft(torch.polar(new_magnitude, new_phase), n_fft, hop, window=window, center=True, length=total)
    rms_in = flat.pow(2).mean(-1, keepdim=True).sqrt()
    rms_out = shifted.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-8)
    return (shifted * (rms_in / rms_out)).view_as(x).to(x.dtype)


def pitch_n_fft(sample_rate: float) -> int:
    """About 64 ms of audio, a power of two (512 at 8 kHz, 1024 at 16 kHz)."""
    return 1 << max(6, round(math.log2(0.064 * sample_rate)))


def room_impulse_responses(rt60: Tensor, length: int, sample_rate: float) -> Tensor:
    """(B, length) synthetic RIRs: a direct path, then Gaussian noise decaying by 60 dB in `rt60` (B,) seconds;
    unit energy."""
    t = torch.arange(length, device=rt60.device, dtype=torch.float32).view(1, -1) / sample_rate
    decay = torch.exp(-math.log(1000.0) * t / rt60.view(-1, 1).float())  # 60 dB = amplitude / 1000
    rir = torch.randn(rt60.shape[0], length, device=rt60.device) * decay
    rir[:, 0] = 1.0
    return rir / rir.norm(dim=-1, keepdim=True)


def reverb(x: Tensor, rt60: Tensor, wet: Tensor, sample_rate: float, max_seconds: float = 1.0) -> Tensor:
    """x convolved with a synthetic room (`room_impulse_responses`) by FFT (linear, not circular), mixed
    (1 - wet) dry + wet reverberant, per sample."""
    total = x.shape[-1]
    length = max(2, min(total, int(max_seconds * sample_rate), int(float(rt60.max()) * sample_rate) + 1))
    rir = room_impulse_responses(rt60, length, sample_rate).to(x.dtype)
    n = total + length - 1
    shape = (x.shape[0], *([1] * (x.ndim - 2)), -1)
    wet_signal = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(rir, n=n).view(shape), n=n)[..., :total]
    w = per_sample(wet, x)
    return (1 - w) * x + w * wet_signal


# -- the ops as modules: probability and ranges, parameters drawn per sample ---------------------------------


class AudioOp(nn.Module):
    """An op applied to each sample with probability `p`; `apply(x)` draws the parameters of the samples it gets.

    Only the chosen samples are computed (one index-select and one scatter per batch, not a loop): for the
    costly ops (pitch shift, reverb, filters) at p < 1 that is the difference."""

    def __init__(self, p: float):
        super().__init__()
        self.p = check_probability(p, type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        return on_chosen(x, self.p, self.apply, draw_when_certain=False)

    def apply(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class PolarityInversion(AudioOp):
    def apply(self, x: Tensor) -> Tensor:
        return -x


class Noise(AudioOp):
    def __init__(self, p: float = 0.01, snr: Range = (0.001, 0.005)):
        super().__init__(p)
        self.snr = snr

    def apply(self, x: Tensor) -> Tensor:
        return add_noise(x, uniform(x, *self.snr))


class Gain(AudioOp):
    def __init__(self, p: float = 0.3, db: Range = (-20.0, -1.0)):
        super().__init__(p)
        self.db = db

    def apply(self, x: Tensor) -> Tensor:
        return gain(x, uniform(x, *self.db))


class HighLowPass(AudioOp):
    """A high-pass at `highpass` Hz or a low-pass at `lowpass` Hz, one of the two at random per sample."""

    def __init__(
        self, sample_rate: float, p: float = 0.8, highpass: Range = (200.0, 1200.0), lowpass: Range = (2200.0, 4000.0)
    ):
        super().__init__(p)
        self.sample_rate, self.highpass, self.lowpass = sample_rate, highpass, lowpass

    def apply(self, x: Tensor) -> Tensor:
        high = chosen(x, 0.5)
        cutoff = torch.where(high, uniform(x, *self.highpass), uniform(x, *self.lowpass))
        return butterworth_filter(x, cutoff, high, self.sample_rate)


class Delay(AudioOp):
    def __init__(self, sample_rate: float, p: float = 0.3, ms: Range = (200.0, 450.0), volume: float = 0.5):
        super().__init__(p)
        self.sample_rate, self.ms, self.volume = sample_rate, ms, volume

    def apply(self, x: Tensor) -> Tensor:
        return delay(x, (uniform(x, *self.ms) * self.sample_rate / 1000).round(), self.volume)


class PitchShift(AudioOp):
    def __init__(self, sample_rate: float, p: float = 0.6, cents: Range = (-700.0, 700.0)):
        super().__init__(p)
        self.sample_rate, self.cents = sample_rate, cents

    def apply(self, x: Tensor) -> Tensor:
        return pitch_shift(x, uniform(x, *self.cents), self.sample_rate)


class Reverb(AudioOp):
    def __init__(self, sample_rate: float, p: float = 0.6, rt60: Range = (0.1, 0.6), wet: Range = (0.1, 0.5)):
        super().__init__(p)
        self.sample_rate, self.rt60, self.wet = sample_rate, rt60, wet

    def apply(self, x: Tensor) -> Tensor:
        return reverb(x, uniform(x, *self.rt60), uniform(x, *self.wet), self.sample_rate)


class CLMRViews(ViewPipeline):
    """CLMR's views of raw waveforms (Spijkervet & Burgoyne 2021): random crop, then each op with its
    probability, in CLMR's order: polarity inversion 0.8, noise 0.01, gain 0.3 (-20..-1 dB), high-pass
    200-1200 Hz or low-pass 2200-4000 Hz 0.8, delay 200-450 ms 0.3, pitch shift +-700 cents 0.6, reverb 0.6.

    Args:
        sample_rate: Hz; by default the data's (`DataInfo.sample_rate`).
        crop_seconds: length of each view (a random window of the sample; the evaluation view is the centre);
            None: the whole sample.
        strength: multiplies every probability (clamped to 1): one knob for a sweep; 0 leaves crops only.
        *_p, and the ranges: each op's probability and parameters.
        num_views: V.
    """

    def __init__(
        self,
        sample_rate: float | None = None,
        crop_seconds: float | None = None,
        num_views: int = 2,
        strength: float = 1.0,
        polarity_p: float = 0.8,
        noise_p: float = 0.01,
        noise_snr: Range = (0.001, 0.005),
        gain_p: float = 0.3,
        gain_db: Range = (-20.0, -1.0),
        filter_p: float = 0.8,
        highpass_hz: Range = (200.0, 1200.0),
        lowpass_hz: Range = (2200.0, 4000.0),
        delay_p: float = 0.3,
        delay_ms: Range = (200.0, 450.0),
        pitch_p: float = 0.6,
        pitch_cents: Range = (-700.0, 700.0),
        reverb_p: float = 0.6,
        reverb_rt60: Range = (0.1, 0.6),
        reverb_wet: Range = (0.1, 0.5),
    ):
        super().__init__()
        check_views(num_views)
        if strength < 0:
            raise ConfigError(f"strength must be >= 0, got {strength}")
        self.num_views, self.crop_seconds, self.strength = num_views, crop_seconds, strength
        self.settings = {
            "polarity": (polarity_p, {}),
            "noise": (noise_p, {"snr": noise_snr}),
            "gain": (gain_p, {"db": gain_db}),
            "filter": (filter_p, {"highpass": highpass_hz, "lowpass": lowpass_hz}),
            "delay": (delay_p, {"ms": delay_ms}),
            "pitch": (pitch_p, {"cents": pitch_cents}),
            "reverb": (reverb_p, {"rt60": reverb_rt60, "wet": reverb_wet}),
        }
        self.sample_rate: float | None = None
        self.chain = nn.Sequential()
        if sample_rate is not None:
            self._build(sample_rate)

    def _build(self, sample_rate: float) -> None:
        self.sample_rate = float(sample_rate)
        kinds = {
            "polarity": PolarityInversion, "noise": Noise, "gain": Gain, "filter": HighLowPass,
            "delay": Delay, "pitch": PitchShift, "reverb": Reverb,
        }  # fmt: skip
        rate_free = ("polarity", "noise", "gain")
        ops = []
        for name, (p, ranges) in self.settings.items():
            p = min(1.0, p * self.strength)
            if p > 0:
                args = ranges if name in rate_free else {"sample_rate": self.sample_rate, **ranges}
                ops.append(kinds[name](p=p, **args))
        self.chain = nn.Sequential(*ops)

    def bind(self, info) -> None:
        if self.sample_rate is None:
            if not info.sample_rate:
                raise ConfigError(
                    f"{type(self).__name__}: data {info.name!r} has no sample_rate; set augment's sample_rate"
                )
            self._build(info.sample_rate)

    @classmethod
    def for_data(cls, info) -> CLMRViews:
        pipeline = cls()
        pipeline.bind(info)
        return pipeline

    def crop_length(self, total: int) -> int:
        if self.crop_seconds is None or self.sample_rate is None:
            return total
        return min(total, max(1, int(round(self.crop_seconds * self.sample_rate))))

    def view_info(self, info):
        length = self.crop_length(info.shape[-1])
        return replace(info, shape=(*info.shape[:-1], length))

    def waveform_view(self, x: Tensor) -> Tensor:
        return self.chain(random_crop(x.float(), self.crop_length(x.shape[-1])))

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.waveform_view(x) for _ in range(self.num_views)]

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        return centre_crop(x.float(), self.crop_length(x.shape[-1]))


class LogMelViews(CLMRViews):
    """Log-mel spectrogram views: CLMR's waveform chain (all of `CLMRViews`' arguments), then `LogMel`,
    SpecAugment's masks and a log-domain mixup within the batch; standardised by `db_mean` and `db_std`.
    Views are (C, n_mels, frames): a 2-D backbone takes them (timm's with in_chans = C).

    Args:
        n_mels, n_fft, hop_length, f_min, f_max, top_db: the front end (n_fft: about 64 ms by default).
        freq_mask, time_mask, num_masks, specaugment_p: SpecAugment's widest bands (in mel bins and frames),
            bands of each kind, and probability; 0 masks: off.
        mixup_p, mixup_ratio: the log-mixup's probability and largest share of the other sample.
        db_mean, db_std: views are (dB - db_mean) / db_std.
    """

    def __init__(
        self,
        n_mels: int = 64,
        n_fft: int | None = None,
        hop_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        freq_mask: int = 8,
        time_mask: int = 10,
        num_masks: int = 2,
        specaugment_p: float = 0.5,
        mixup_p: float = 0.5,
        mixup_ratio: float = 0.4,
        db_mean: float = -40.0,
        db_std: float = 20.0,
        **waveform,
    ):
        self.front = dict(n_mels=n_mels, n_fft=n_fft, hop_length=hop_length, f_min=f_min, f_max=f_max, top_db=top_db)
        super().__init__(**waveform)
        self.db_mean, self.db_std = db_mean, db_std
        self.spec_augment = SpecAugment(freq_mask, time_mask, num_masks, num_masks, p=specaugment_p)
        self.mixup = LogMixup(mixup_ratio, p=mixup_p, db=True)

    def _build(self, sample_rate: float) -> None:
        super()._build(sample_rate)
        front = dict(self.front)
        front["n_fft"] = front["n_fft"] or pitch_n_fft(sample_rate)
        self.logmel = LogMel(sample_rate, **front)

    def view_info(self, info):
        waveform = super().view_info(info)
        if self.sample_rate is None:
            self.bind(info)
        frames = self.logmel.frames(waveform.shape[-1])
        return replace(info, shape=(info.channels, self.logmel.n_mels, frames))

    def spectrogram(self, wave: Tensor) -> Tensor:
        return (self.logmel(wave) - self.db_mean) / self.db_std

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        views = [self.spectrogram_view(self.logmel(self.waveform_view(x))) for _ in range(self.num_views)]
        return [(db - self.db_mean) / self.db_std for db in views]

    def spectrogram_view(self, db: Tensor) -> Tensor:
        """What a view does to its log-mel spectrogram; a subclass adds its own ops here."""
        return self.spec_augment(self.mixup(db))

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        return self.spectrogram(super().eval_view(x))
