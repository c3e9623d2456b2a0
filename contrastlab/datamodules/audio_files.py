"""Decoding audio files: any file libsndfile reads (WAV, FLAC, OGG, ...) to a float32 (C, T) waveform at one
sample rate (scipy's polyphase resampling), cut or zero-padded to one length (moved out of
datamodules/audio.py; the audio and paired DataModules decode through it)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3"}


@dataclass(frozen=True)
class Decoding:
    """How every file becomes a fixed-size (C, T) float32 tensor."""

    sample_rate: int
    length: int
    channels: int

    def read(self, path: Path) -> np.ndarray:
        """(channels, samples) float32 at `sample_rate`, before cropping."""
        import soundfile as sf

        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, file channels)
        wave = data.T
        if self.channels == 1:
            wave = wave.mean(axis=0, keepdims=True)
        elif wave.shape[0] == 1:
            wave = np.repeat(wave, self.channels, axis=0)
        elif wave.shape[0] != self.channels:
            raise ValueError(f"{wave.shape[0]} channels, data.channels is {self.channels}")
        if wave.shape[1] == 0:
            raise ValueError("no audio frames")
        if rate != self.sample_rate:
            wave = resample(wave, rate, self.sample_rate)
        if not np.isfinite(wave).all():
            raise ValueError("non-finite samples")
        return np.ascontiguousarray(wave, dtype=np.float32)

    def fit_length(self, wave: np.ndarray, random: bool) -> Tensor:
        """Cut or zero-pad to `length`: at a random offset when `random` (training), else centred.

        The offset comes from torch's generator: the global one (saved in checkpoints) without loader workers,
        each worker's own (seeded by the DataLoader) with them."""
        n, length = wave.shape[1], self.length
        out = np.zeros((wave.shape[0], length), dtype=np.float32)
        span = abs(n - length)
        start = int(torch.randint(0, span + 1, ())) if random else span // 2
        if n >= length:
            out[:] = wave[:, start : start + length]
        else:
            out[:, start : start + n] = wave
        return torch.from_numpy(out)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """(C, T) resampled from `rate_in` to `rate_out` Hz by scipy's polyphase FIR filter (anti-aliased)."""
    from scipy.signal import resample_poly

    ratio = Fraction(int(rate_out), int(rate_in)).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


class AudioReader:
    """A file -> mono float (1, num_samples) at `sample_rate`, centred and cut or zero-padded (picklable, for
    loader workers): how the paired DataModule reads its audio."""

    def __init__(self, sample_rate: int, num_samples: int):
        self.decoding = Decoding(sample_rate, num_samples, channels=1)

    def __call__(self, path: Path) -> Tensor:
        return self.decoding.fit_length(self.decoding.read(path), random=False)
