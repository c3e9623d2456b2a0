"""Ops shared by the view pipelines of every modality (audio, series, sequence, vision, volume), in one place.

Every op works on a batch (B, ...) on any device and draws its parameters per sample, without a Python loop:
`chosen` says which samples an op with probability p applies to, `on_chosen` computes an op on those samples
only, `uniform` draws one value per sample and `per_sample` broadcasts it over the sample's other dimensions.
`per_view` and `triple` read options given once or per view / per axis; `random_crop`, `centre_crop` and `gain`
act on the last (time) axis; `RandomNoise` adds Gaussian noise to chosen samples of any rank. A bad option
is a `ConfigError` naming its key (`model.augment.<key>`).

Random draws: `chosen` draws one number per sample from torch's generator even at p = 0 or p = 1, so the
random stream after an op does not depend on its probability; `draw_when_certain=False` (the series ops and
`AudioOp`, as they were written) draws nothing at p >= 1.

`ChannelNormalize` is the views' per-channel normalisation at any rank (the contract's rule, contrastlab/contract.py).
The spectrogram ops turn any sampled (B, C, T) signal into (B, C, F, T) spectrograms and perturb those: our log-mel
front end (`LogMel`, the mel filterbank written here and checked against librosa's), SpecAugment's frequency and
time masks, and a mixup of log-mel spectrograms within the batch; `LogMelViews` (augment/audio.py) chains them after
CLMR's waveform ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from contrastlab.errors import ConfigError

PerView = float | Sequence[float]
Range = tuple[float, float]


def chosen(x: Tensor, p: float, keepdim: bool = False, draw_when_certain: bool = True) -> Tensor:
    """Which samples an op with probability p applies to: (B,) bool, or (B, 1, ..., 1) with `keepdim`."""
    if p >= 1 and not draw_when_certain:
        mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    else:
        mask = torch.rand(x.shape[0], device=x.device) < p
    return mask.view(-1, *([1] * (x.ndim - 1))) if keepdim else mask


def on_chosen(x: Tensor, p: float, op: Callable[[Tensor], Tensor], draw_when_certain: bool = True) -> Tensor:
    """`op` applied to the samples chosen with probability p only (the others are not computed at all): one
    index-select and one scatter per batch. Without `draw_when_certain`, p <= 0 and p >= 1 draw nothing."""
    if not draw_when_certain:
        if p <= 0:
            return x
        if p >= 1:
            return op(x)
    picked = chosen(x, p).nonzero().flatten()
    if picked.numel() == 0:
        return x
    return x.index_copy(0, picked, op(x.index_select(0, picked)))


def uniform(x: Tensor, low: float, high: float) -> Tensor:
    """(B,) values drawn uniformly in [low, high], one per sample."""
    return torch.empty(x.shape[0], device=x.device).uniform_(low, high)


def per_sample(values: Tensor, x: Tensor) -> Tensor:
    """(B,) values as (B, 1, ..., 1) in x's dtype, to scale or shift each sample of x."""
    return values.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def per_view(value: PerView, num_views: int, name: str) -> list[float]:
    """An option given once (every view) or once per view, as one float per view."""
    if isinstance(value, int | float):
        return [float(value)] * num_views
    values = [float(v) for v in value]
    if len(values) != num_views:
        raise ConfigError(f"model.augment.{name}: {len(values)} per-view values given for {num_views} views")
    return values


def triple(value, name: str) -> tuple:
    """An option given once or per axis (D, H, W), as three values."""
    values = tuple(value) if isinstance(value, Sequence) else (value,) * 3
    if len(values) != 3:
        raise ConfigError(f"{name}: give one value or three (D, H, W), got {value}")
    return values


def check_probability(p: float, name: str) -> float:
    if not 0 <= p <= 1:
        raise ConfigError(f"{name}: probability must be in [0, 1], got {p}")
    return p


def check_views(num_views: int) -> int:
    if num_views < 1:
        raise ConfigError(f"model.augment.num_views must be >= 1, got {num_views}")
    return num_views


def random_crop(x: Tensor, length: int, start: Tensor | None = None) -> Tensor:
    """(B, C, length) windows of x (B, C, T) starting at `start` (B,) steps; random starts by default."""
    total = x.shape[-1]
    if length >= total:
        return x
    if start is None:
        start = torch.randint(0, total - length + 1, (x.shape[0],), device=x.device)
    index = start.view(-1, 1, 1) + torch.arange(length, device=x.device).view(1, 1, -1)
    return x.gather(-1, index.expand(x.shape[0], x.shape[1], length))


def centre_crop(x: Tensor, length: int) -> Tensor:
    """The centred `length` steps of x's last axis (all of it when shorter)."""
    start = (x.shape[-1] - length) // 2
    return x if length >= x.shape[-1] else x[..., start : start + length]


def gain(x: Tensor, db: Tensor) -> Tensor:
    """x scaled by `db` (B,) decibels: amplitude factor 10^(db / 20)."""
    return x * per_sample(torch.pow(10.0, db / 20), x)


class ChannelNormalize(nn.Module):
    """(x - mean) / std per channel along dim 1, for inputs of any rank: (B, C), (B, C, T), (B, C, H, W), ...

    The statistics are non-persistent buffers: they follow the module to its device and come from the
    data's DataInfo (or the config), not from a checkpoint's state.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ConfigError(f"normalisation: {len(mean)} channel means but {len(std)} standard deviations")
        if any(s <= 0 for s in std):
            raise ConfigError(f"normalisation: every channel's std must be > 0, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.mean.numel():
            raise ConfigError(
                f"normalisation: {self.mean.numel()} channel statistics for samples with {x.shape[1]} channels "
                f"(dim 1 of {tuple(x.shape)}): give one mean and std per channel"
            )
        per_channel = (1, -1, *([1] * (x.ndim - 2)))
        return (x - self.mean.view(per_channel).to(x.dtype)) / self.std.view(per_channel).to(x.dtype)


# -- SpecAugment and mixup, for (B, C, F, T) spectrograms ---------------------------------------------------


def band_masks(x: Tensor, dim: int, max_width: int, count: int) -> Tensor:
    """(B, size) bool: `count` bands of width 0..max_width at random positions along `dim`, per sample."""
    size = x.shape[dim]
    position = torch.arange(size, device=x.device).view(1, 1, -1)
    width = torch.randint(0, max(1, max_width) + 1, (x.shape[0], count, 1), device=x.device)
    start = (torch.rand(x.shape[0], count, 1, device=x.device) * (size - width + 1)).floor()
    return ((position >= start) & (position < start + width)).any(dim=1)


class SpecAugment(nn.Module):
    """SpecAugment's frequency and time masks (Park et al. 2019): each sample gets its own bands, filled with
    the sample's mean."""

    def __init__(
        self, freq_width: int = 8, time_width: int = 16, freq_masks: int = 2, time_masks: int = 2, p: float = 1.0
    ):
        super().__init__()
        self.freq_width, self.time_width, self.freq_masks, self.time_masks, self.p = (
            freq_width, time_width, freq_masks, time_masks, p,
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if self.p <= 0:
            return x
        freq = band_masks(x, -2, self.freq_width, self.freq_masks) if self.freq_masks else None
        time = band_masks(x, -1, self.time_width, self.time_masks) if self.time_masks else None
        mask = torch.zeros(x.shape[0], x.shape[-2], x.shape[-1], dtype=torch.bool, device=x.device)
        if freq is not None:
            mask |= freq[:, :, None]
        if time is not None:
            mask |= time[:, None, :]
        mask &= chosen(x, self.p).view(-1, 1, 1)
        fill = x.mean(dim=(-2, -1), keepdim=True)
        return torch.where(mask.unsqueeze(1), fill, x)


class LogMixup(nn.Module):
    """Mixup within the batch for log-scale spectrograms (BYOL-A's, Niizumi et al. 2021): each sample is mixed
    with another sample of the batch (the batch rotated by a random shift) in the linear domain,
    log((1 - l) exp(x) + l exp(x_other)), with l drawn in [0, ratio] per sample. Works on dB inputs (`db: true`)
    or natural-log ones."""

    def __init__(self, ratio: float = 0.4, p: float = 1.0, db: bool = True):
        super().__init__()
        self.ratio, self.p, self.db = ratio, p, db

    def forward(self, x: Tensor) -> Tensor:
        if self.p <= 0 or self.ratio <= 0 or x.shape[0] < 2:
            return x
        # a random rotation of the batch: every sample meets another one, never itself
        shift = int(torch.randint(1, x.shape[0], ()))
        other = x.roll(shift, dims=0)
        weight = per_sample(uniform(x, 0.0, self.ratio) * chosen(x, self.p), x)
        scale = math.log(10) / 10 if self.db else 1.0
        mixed = torch.logaddexp(x * scale + torch.log1p(-weight), other * scale + torch.log(weight.clamp(min=1e-12)))
        return torch.where(weight > 0, mixed / scale, x)


# -- the log-mel front end ----------------------------------------------------------------------------


def hz_to_mel(f: Tensor, htk: bool = False) -> Tensor:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), librosa's default; or HTK's."""
    if htk:
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    linear = f * 3.0 / 200.0
    log_region = 15.0 + torch.log(f.clamp(min=1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(f >= 1000.0, log_region, linear)


def mel_to_hz(m: Tensor, htk: bool = False) -> Tensor:
    if htk:
        return 700.0 * (torch.pow(10.0, m / 2595.0) - 1.0)
    linear = m * 200.0 / 3.0
    log_region = 1000.0 * torch.exp((math.log(6.4) / 27.0) * (m - 15.0))
    return torch.where(m >= 15.0, log_region, linear)


def mel_filterbank(
    sample_rate: float, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None, htk: bool = False
) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, Slaney-normalised (each has unit area), as librosa.filters.mel."""
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min, dtype=torch.float64), htk)),
        float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64), htk)),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz = mel_to_hz(mel_points, htk)
    widths = torch.diff(hz)
    ramps = hz.view(-1, 1) - fft_freqs.view(1, -1)
    lower = -ramps[:-2] / widths[:-1].view(-1, 1)
    upper = ramps[2:] / widths[1:].view(-1, 1)
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (hz[2:] - hz[:-2])).view(-1, 1)
    return weights.float()


class LogMel(nn.Module):
    """Waveforms (B, C, T) -> log-mel spectrograms (B, C, n_mels, frames) in dB, on the batch's device.

    Power STFT (Hann window, centred, zero-padded like librosa's default), our mel filterbank, then
    10 log10(max(S, amin)) clipped at `top_db` below each sample's maximum. frames = 1 + T // hop_length.
    """

    def __init__(
        self,
        sample_rate: float,
        n_fft: int = 1024,
        hop_length: int | None = None,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        htk: bool = False,
    ):
        super().__init__()
        self.sample_rate, self.n_fft = sample_rate, n_fft
        self.hop_length = hop_length or n_fft // 4
        self.n_mels, self.top_db = n_mels, top_db
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, htk), persistent=False)

    def frames(self, length: int) -> int:
        return 1 + length // self.hop_length

    def power_mel(self, x: Tensor) -> Tensor:
        batch_shape, total = x.shape[:-1], x.shape[-1]
        spec = torch.stft(
            x.reshape(-1, total).float(), self.n_fft, self.hop_length, window=self.window, center=True,
            pad_mode="constant", return_complex=True,
        )  # fmt: skip
        power = spec.real.square() + spec.imag.square()
        return (self.filters @ power).view(*batch_shape, self.n_mels, -1)

    def forward(self, x: Tensor) -> Tensor:
        db = 10.0 * torch.log10(self.power_mel(x).clamp(min=1e-10))
        if self.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        return db


class RandomNoise(nn.Module):
    """Additive Gaussian noise of standard deviation `std` on each sample with probability p."""

    def __init__(self, std: float = 0.05, p: float = 0.5):
        super().__init__()
        self.std, self.p = std, p

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.randn_like(x) * self.std * chosen(x, self.p, keepdim=True)
