"""Raw-feature 1-NN baselines against slow references, on unequal-length and masked series."""

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
    results, skipped = run_baselines(["nn_euclidean", "nn_dtw"], loader, loader)
    assert results["nn_euclidean"]["acc"] == 1.0 and not skipped
