"""Raw-feature baselines: what a learned representation must beat, computed on the samples themselves.

`nn_euclidean`: 1-NN by Euclidean distance between the flattened samples (any kind of data). `nn_dtw`: 1-NN
by dynamic time warping (aeon's `dtw_pairwise_distance`, full window unless `dtw_window` is given as a
fraction of the length) between samples with a time axis, (C, T). Both read the samples as their loader
gives them (what the data calls raw: pixels, or series after the DataModule's normalisation). Samples of
unequal length are compared over their own steps (`lengths`, or a NaN tail); DTW compares them as they
are, Euclidean pads them with 0 to the longest; a missing step (NaN) counts as 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from contrastlab.evaluation.protocols import UnsupportedProtocol, is_multilabel, labelled, require_classes

BASELINES = ("nn_euclidean", "nn_dtw")
LABELS = {"nn_euclidean": "1-NN Euclidean (raw)", "nn_dtw": "1-NN DTW (raw)"}


def raw_samples(loader: DataLoader) -> tuple[list[np.ndarray], Tensor]:
    """Every sample's `x` as a float array over its own steps, in the loader's order, and the labels."""
    samples, ys = [], []
    for batch in loader:
        x = torch.as_tensor(batch["x"]).float()
        lengths = batch.get("lengths")
        for i in range(len(x)):
            sample = x[i]
            if lengths is not None:
                sample = sample[..., : int(lengths[i])]
            elif sample.ndim >= 2 and sample.isnan().any():  # a NaN tail is padding
                observed = (~sample.isnan()).flatten(0, -2).any(0).nonzero()
                sample = sample[..., : int(observed.max()) + 1 if len(observed) else 0]
            samples.append(sample.nan_to_num().numpy())
        ys.append(torch.as_tensor(batch["y"]))
    return samples, torch.cat(ys)


def _check(name: str, train_y: Tensor, test_y: Tensor) -> None:
    if is_multilabel(train_y):
        raise UnsupportedProtocol(name, "multi-label data: 1-NN classifies one class per sample")
    require_classes(name, train_y, "train")
    require_classes(name, test_y, "test", minimum=1)


def _nearest_accuracy(distances: np.ndarray | Tensor, train_y: Tensor, test_y: Tensor) -> dict[str, float]:
    nearest = torch.as_tensor(np.asarray(distances)).argmin(dim=1)
    return {"acc": float((train_y[nearest] == test_y).float().mean())}


def nn_euclidean(train: list[np.ndarray], train_y: Tensor, test: list[np.ndarray], test_y: Tensor) -> dict[str, float]:
    """1-NN accuracy by Euclidean distance between flattened samples (zero-padded to the longest)."""
    _check("nn_euclidean", train_y, test_y)
    train, train_y, test, test_y = _labelled(train, train_y, test, test_y)
    longest = max(s.shape[-1] for s in train + test) if train[0].ndim >= 1 else 0

    def flat(samples: list[np.ndarray]) -> Tensor:
        padded = [np.pad(s, [(0, 0)] * (s.ndim - 1) + [(0, longest - s.shape[-1])]) for s in samples]
        return torch.from_numpy(np.stack(padded).reshape(len(samples), -1)).double()

    return _nearest_accuracy(torch.cdist(flat(test), flat(train)), train_y, test_y)


def nn_dtw(
    train: list[np.ndarray], train_y: Tensor, test: list[np.ndarray], test_y: Tensor, window: float | None = None
) -> dict[str, float]:
    """1-NN accuracy by dependent (multivariate) DTW between (C, T) samples; `window`: Sakoe-Chiba band as a
    fraction of the length (None: no band, the archive's "DTW full")."""
    _check("nn_dtw", train_y, test_y)
    if train[0].ndim != 2:
        raise UnsupportedProtocol("nn_dtw", f"DTW needs samples with one time axis (C, T); these are {train[0].shape}")
    from contrastlab.metrics.dtw import pairwise_dtw

    train, train_y, test, test_y = _labelled(train, train_y, test, test_y)
    as_float = lambda samples: [x.astype(np.float64) for x in samples]  # noqa: E731
    return _nearest_accuracy(pairwise_dtw(as_float(test), as_float(train), window), train_y, test_y)


def _labelled(train, train_y: Tensor, test, test_y: Tensor):
    keep_train, keep_test = labelled(train_y), labelled(test_y)
    pick = lambda samples, keep: [s for s, k in zip(samples, keep.tolist()) if k]  # noqa: E731
    return pick(train, keep_train), train_y[keep_train], pick(test, keep_test), test_y[keep_test]


def run_baselines(
    names: list[str], train_loader: DataLoader, test_loader: DataLoader, dtw_window: float | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """The baselines `names` on the raw train and test samples: (results by name, reasons of those skipped)."""
    train, train_y = raw_samples(train_loader)
    test, test_y = raw_samples(test_loader)
    results, skipped = {}, {}
    for name in names:
        try:
            if name == "nn_euclidean":
                results[name] = nn_euclidean(train, train_y, test, test_y)
            elif name == "nn_dtw":
                results[name] = nn_dtw(train, train_y, test, test_y, dtw_window)
            else:
                raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
        except UnsupportedProtocol as err:
            skipped[name] = err.reason
    return results, skipped
