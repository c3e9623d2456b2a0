"""Log-mel views of short speech: `LogMelViews` plus BYOL-A's random resize crop of the spectrogram.

Short words (FSDD's digits last 0.2-0.7 s) are what the speaker says, shaped by who says it: the views should vary
the speaker and keep the word. A speaker's vocal tract length scales the formants along frequency (VTLP, Jaitly &
Hinton 2013), speaking rate scales time, and the pitch moves the harmonics; `spec_resize_crop` warps both axes of
the log-mel spectrogram per sample by one batched `grid_sample` (BYOL-A's random resize crop, Niizumi et al. 2021,
with the frequency scale anchored at 0 Hz, so that it reads as a formant shift rather than a band crop).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.augment.audio import LogMelViews
from contrastlab.augment.ops import Range, check_probability, on_chosen, uniform
from contrastlab.errors import ConfigError


def spec_resize_crop(x: Tensor, freq_scale: Tensor, time_scale: Tensor, time_shift: Tensor) -> Tensor:
    """(B, C, F, T) spectrograms resampled per sample: output bin f reads input bin f * freq_scale (the lowest bin
    stays put), output frame t reads frame centre + (t - centre) * time_scale + time_shift * T / 2.

    A scale below 1 zooms in (a crop stretched to the full size), above 1 zooms out; reads beyond the edges repeat
    the edge (silence at the ends of a padded clip, the top band at the top). Bilinear, differentiable in x."""
    batch = x.shape[0]
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
    # affine_grid's coordinates are (time, frequency) in [-1, 1]; frequency's -1 is the lowest bin.
    theta[:, 0, 0] = time_scale.to(x.dtype)
    theta[:, 0, 2] = time_shift.to(x.dtype)
    theta[:, 1, 1] = freq_scale.to(x.dtype)
    theta[:, 1, 2] = freq_scale.to(x.dtype) - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


class SpecResizeCrop(nn.Module):
    """`spec_resize_crop` with probability p, scales drawn log-uniformly in `freq_scale` and `time_scale` and a
    time shift uniform in +-`time_shift` (a share of half the length)."""

    def __init__(
        self,
        freq_scale: Range = (0.85, 1.15),
        time_scale: Range = (0.8, 1.25),
        time_shift: float = 0.1,
        p: float = 1.0,
    ):
        super().__init__()
        for name, (low, high) in (("freq_scale", freq_scale), ("time_scale", time_scale)):
            if not 0 < low <= high:
                raise ConfigError(f"model.augment.{name}: give 0 < low <= high, got {(low, high)}")
        if time_shift < 0:
            raise ConfigError(f"model.augment.time_shift must be >= 0, got {time_shift}")
        self.p = check_probability(p, type(self).__name__)
        self.freq_scale, self.time_scale, self.time_shift = freq_scale, time_scale, time_shift

    def draw_scale(self, x: Tensor, bounds: Range) -> Tensor:
        # log-uniform: a zoom in by s and a zoom out by 1/s are equally likely
        return uniform(x, math.log(bounds[0]), math.log(bounds[1])).exp()

    def apply(self, x: Tensor) -> Tensor:
        freq, time = self.draw_scale(x, self.freq_scale), self.draw_scale(x, self.time_scale)
        return spec_resize_crop(x, freq, time, uniform(x, -self.time_shift, self.time_shift))

    def forward(self, x: Tensor) -> Tensor:
        return on_chosen(x, self.p, self.apply, draw_when_certain=False)


class SpeechViews(LogMelViews):
    """`LogMelViews` (CLMR's waveform chain, log-mel, log-mixup, SpecAugment; every argument of theirs) with
    `SpecResizeCrop` after the mixup: the formant and rate changes of another speaker.

    Args:
        freq_scale, time_scale, time_shift, resize_p: `SpecResizeCrop`'s ranges and probability (0: off).
    """

    def __init__(
        self,
        freq_scale: Range = (0.85, 1.15),
        time_scale: Range = (0.8, 1.25),
        time_shift: float = 0.1,
        resize_p: float = 1.0,
        **logmel,
    ):
        super().__init__(**logmel)
        self.resize_crop = SpecResizeCrop(freq_scale, time_scale, time_shift, p=resize_p)

    def spectrogram_view(self, db: Tensor) -> Tensor:
        return self.spec_augment(self.resize_crop(self.mixup(db)))
