"""The practitioner's features of audio clips, the baseline `contrastlab eval` puts beside learned ones
(`AudioDataModule.hand_features`): each clip's MFCC mean and standard deviation over frames, z-scored by the
train split."""

from __future__ import annotations

import functools

import numpy as np
import torch

from contrastlab.contract import HandFeatures, Samples

MFCCS = 20


def mfcc_stats(wave: np.ndarray, sample_rate: float) -> np.ndarray:
    """(2 * MFCCS * C,): the mean and standard deviation over frames of each channel's MFCCs, as
    librosa.feature.mfcc computes them with its defaults (n_fft 2048, hop 512, 128 mels, dB clipped 80 dB
    below the peak, orthonormal DCT-II), through our log-mel front end."""
    from scipy.fft import dct

    db = _librosa_front(float(sample_rate))(torch.as_tensor(wave, dtype=torch.float32)[None])[
        0
    ].numpy()  # (C, mels, frames)
    mfcc = dct(db, type=2, norm="ortho", axis=1)[:, :MFCCS]
    return np.concatenate([mfcc.mean(axis=2), mfcc.std(axis=2)], axis=1).reshape(-1)


@functools.cache
def _librosa_front(sample_rate: float):
    from contrastlab.augment.ops import LogMel

    return LogMel(sample_rate, n_fft=2048, hop_length=512, n_mels=128, top_db=80.0)


def standardized_by_train(make):
    """`HandFeatures.fit` of per-sample features `make(sample)`, z-scored by the train split's statistics (their
    scales differ by orders of magnitude: the 0th MFCC is the loudness, the others are not)."""

    def fit(train: Samples, seed: int):
        features = np.stack([make(s) for s in train])
        mean, std = features.mean(axis=0), np.maximum(features.std(axis=0), 1e-6)
        return lambda samples: (np.stack([make(s) for s in samples]) - mean) / std

    return fit


def mfcc_baseline(sample_rate: float) -> HandFeatures:
    """The clips' MFCC mean+std, z-scored by train, with 1-NN and a logistic probe."""
    features = standardized_by_train(lambda wave: mfcc_stats(wave, sample_rate))
    return HandFeatures("MFCC mean+std", features, ("nn", "logistic"))
