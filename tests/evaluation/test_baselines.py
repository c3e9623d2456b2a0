"""The practitioner's baselines: 1-NN against slow references on unequal-length and masked series, the MFCC and
MiniRocket features against direct computations, and `run_baselines` on a DataModule as a script calls it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastlab.datamodules.series import SeriesSamples, series_collate
from contrastlab.evaluation.baselines import nn_dtw, nn_euclidean, raw_samples, run_baselines
from contrastlab.evaluation.protocols import UnsupportedProtocol


def slow_dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Dependent DTW of (C, Ta) and (C, Tb): squared Euclidean cost between time steps, no window."""
    cost = np.full((a.shape[1] + 1, b.shape[1] + 1), math.inf)
    cost[0, 0] = 0.0
    for i in range(1, a.shape[1] + 1):
        for j in range(1, b.shape[1] + 1):
            step = float(((a[:, i - 1] - b[:, j - 1]) ** 2).sum())
            cost[i, j] = step + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
    return cost[-1, -1]


def nearest(distance, train, test) -> torch.Tensor:
    return torch.tensor([int(np.argmin([distance(q, s) for s in train])) for q in test])


def test_one_nn_euclidean_and_dtw_match_slow_references_on_unequal_lengths():
    rng = np.random.default_rng(0)
    make = lambda n: [rng.standard_normal((2, int(rng.integers(5, 9)))).cumsum(1).astype(np.float32) for _ in range(n)]  # noqa: E731
    train, test = make(12), make(10)
    train_y = torch.arange(12)  # a class per training series: accuracy 1 means every neighbour is the reference's

    def padded_distance(a, b):
        width = max(a.shape[1], b.shape[1])
        pad = lambda s: np.pad(s, [(0, 0), (0, width - s.shape[1])])  # noqa: E731
        return float(np.linalg.norm(pad(a) - pad(b)))

    by_euclid, by_dtw = nearest(padded_distance, train, test), nearest(slow_dtw, train, test)
    assert not torch.equal(by_euclid, by_dtw)  # the two distances disagree somewhere: the test tells them apart
    assert nn_euclidean(train, train_y, test, by_euclid)["acc"] == 1.0
    assert nn_dtw(train, train_y, test, by_dtw)["acc"] == 1.0


def test_raw_samples_read_each_series_over_its_own_steps_and_refuse_what_they_cannot():
    series = [torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[4.0, float("nan"), 6.0, 7.0, 8.0]])]
    samples = SeriesSamples(series, torch.tensor([0, 1]))
    loader = torch.utils.data.DataLoader(samples, batch_size=2, collate_fn=series_collate)
    raw, y = raw_samples(loader)
    assert [s.shape for s in raw] == [(1, 3), (1, 5)] and raw[1][0, 1] == 0 and y.tolist() == [0, 1]
    images = [np.zeros((1, 4, 4), np.float32), np.ones((1, 4, 4), np.float32)]
    labels = torch.tensor([0, 1])
    assert nn_euclidean(images, labels, images, labels)["acc"] == 1.0
    with pytest.raises(UnsupportedProtocol, match=r"DTW needs samples with one time axis"):
        nn_dtw(images, labels, images, labels)


def test_mfcc_features_are_librosas_mfcc_mean_and_std_standardised_by_train():
    import librosa

    from contrastlab.datamodules.audio_features import mfcc_stats, standardized_by_train

    rng = np.random.default_rng(0)
    t = np.arange(4000) / 8000
    waves = [
        (np.sin(2 * np.pi * 440 * t) * np.linspace(0, 1, 4000)).astype(np.float32),
        (0.3 * rng.standard_normal(4000)).astype(np.float32),
    ]
    for wave in waves:
        mfcc = librosa.feature.mfcc(y=wave, sr=8000, n_mfcc=20)
        expected = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])
        np.testing.assert_allclose(mfcc_stats(wave[None], 8000), expected, atol=1e-4 * np.abs(expected).max())
    stereo = np.stack(waves)  # each channel's MFCCs, one after the other
    np.testing.assert_allclose(mfcc_stats(stereo, 8000)[40:], mfcc_stats(stereo[1:], 8000), rtol=1e-6)

    train = [w[None] for w in waves] + [0.5 * w[None] for w in waves]
    transform = standardized_by_train(lambda w: mfcc_stats(w, 8000))(train, 0)
    features = transform(train)
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-4)
    assert transform(train[:1]).shape == (1, 40)


def test_series_baselines_on_a_ucr_set_match_aeons_minirocket_classifier():
    """`run_baselines` on a DataModule, as benchmarks/quality.py calls it: MiniRocket + ridge gives aeon's own
    MiniRocketClassifier's predictions on the same splits, and 1-NN Euclidean the archive's convention."""
    from aeon.classification.convolution_based import MiniRocketClassifier
    from aeon.transformations.collection.convolution_based import MiniRocket

    from contrastlab.datamodules.series import UCR, minirocket
    from contrastlab.evaluation.baselines import names, read_split

    data = UCR(name="ItalyPowerDemand", batch_size=64)
    assert names(data) == ["raw_nn", "raw_dtw", "minirocket_ridge", "supervised"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `make test` and the ledger's processes run: MiniRocket's Numba must not undo it
    try:
        results, skipped = run_baselines(data, ["raw_nn", "minirocket_ridge", "supervised"], options=None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert skipped == {"supervised": "needs the run's model as initialised (initial_model)"}

    train, test = read_split(data.eval_loader("train")), read_split(data.eval_loader("test"))
    direct = MiniRocketClassifier(random_state=0).fit(np.stack(train.samples), train.y.numpy())
    expected = float((direct.predict(np.stack(test.samples)) == test.y.numpy()).mean())
    assert results["minirocket_ridge"]["acc"] == pytest.approx(expected, abs=1e-9) and expected > 0.9
    ours = minirocket(train.samples, 0)(test.samples[:2])
    np.testing.assert_allclose(ours, MiniRocket(random_state=0).fit(np.stack(train.samples)).transform(
        np.stack(test.samples[:2])), rtol=1e-6)  # fmt: skip
    bank, queries = np.stack(train.samples).reshape(len(train.y), -1), np.stack(test.samples).reshape(len(test.y), -1)
    nearest = ((queries[:, None] - bank[None]) ** 2).sum(-1).argmin(1)
    assert results["raw_nn"]["acc"] == pytest.approx(float((train.y.numpy()[nearest] == test.y.numpy()).mean()))
