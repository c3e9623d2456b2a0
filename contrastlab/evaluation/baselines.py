"""The practitioner's baselines: what a learned representation must beat, on the same splits as its features.

Two kinds, both knowing no modality:
- hand-crafted features of the raw samples, which the DataModule declares (`hand_features()`, a
  `contract.HandFeatures` by name: pixels by default, MFCC mean+std for audio, the series and MiniRocket for
  series), each with the generic classifiers it names: `nn` (1-NN by Euclidean distance between the flattened
  features), `dtw` (1-NN by dynamic time warping between (C, T) samples, aeon's `dtw_pairwise_distance`, full
  window unless `dtw_window` is a fraction of the length), `logistic` (the linear probe of
  `protocols.linear_probe`, its L2 penalty chosen on val), `ridge` (standardised features, scikit-learn's
  `RidgeClassifierCV` over alphas 1e-3..1e3: MiniRocket's own classifier). A baseline is named
  `<features>_<classifier>`: `raw_nn`, `mfcc_logistic`, `minirocket_ridge`.
- `supervised`: the run's own network from its random initialisation, fine-tuned with labels exactly as the
  `finetune` protocol fine-tunes the pretrained one (same fractions, subsets, epochs): the control every
  self-supervised paper reports. One group of metrics per fraction, `supervised_10pct`, ...

Samples are read as their loader gives them (`raw_samples`: over their own steps; `lengths`, or a NaN tail,
mark padding); features of unequal length are zero-padded to the longest for `nn`, a missing step counts as 0.
`run_baselines(datamodule, names)` is the entry point, for `contrastlab eval` and for scripts alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.features import split_loader
from contrastlab.evaluation.finetune import FINETUNE_DEFAULTS, finetune_fractions
from contrastlab.evaluation.protocols import UnsupportedProtocol, is_multilabel, labelled, require_classes

SUPERVISED = "supervised"
CLASSIFIERS = {"nn": "1-NN", "dtw": "1-NN DTW", "logistic": "logistic", "ridge": "ridge"}
# Values of the train split read into memory at most: raw features of larger data (a radiology set's
# full-size images) would not fit; such data is skipped with this reason.
MAX_RAW_VALUES = 2 * 10**8


@dataclass
class BaselineOptions:
    """What the baselines read of `contrastlab eval`'s options (the same names), with its defaults."""

    seed: int = 0
    dtw_window: float | None = None
    finetune_fractions: tuple[float, ...] = FINETUNE_DEFAULTS["fractions"]
    finetune_epochs: int = FINETUNE_DEFAULTS["epochs"]
    finetune_lr: float = FINETUNE_DEFAULTS["lr"]
    finetune_batch_size: int = FINETUNE_DEFAULTS["batch_size"]
    finetune_schedule: str = FINETUNE_DEFAULTS["schedule"]

    @classmethod
    def of(cls, options: Any) -> BaselineOptions:
        if options is None or isinstance(options, cls):
            return options or cls()
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls) if hasattr(options, f.name)})


@dataclass
class RawSplit:
    samples: list[np.ndarray]
    y: Tensor
    idx: Tensor


def read_split(loader: DataLoader) -> RawSplit:
    """Every sample's `x` as a float array over its own steps, in the loader's order, with labels and indices."""
    samples, ys, idxs = [], [], []
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
        idxs.append(torch.as_tensor(batch["idx"]))
    return RawSplit(samples, torch.cat(ys), torch.cat(idxs))


def raw_samples(loader: DataLoader) -> tuple[list[np.ndarray], Tensor]:
    split = read_split(loader)
    return split.samples, split.y


# -- the classifiers ---------------------------------------------------------------------------------------


def _single_label(name: str, train_y: Tensor, test_y: Tensor) -> None:
    if is_multilabel(train_y):
        raise UnsupportedProtocol(name, "multi-label data: it classifies one class per sample")
    require_classes(name, train_y, "train")
    require_classes(name, test_y, "test", minimum=1)


def _labelled(samples, y: Tensor):
    keep = labelled(y)
    return [s for s, k in zip(samples, keep.tolist()) if k], y[keep]


def _nearest_accuracy(distances: Callable[[slice], Tensor], count: int, train_y: Tensor, test_y: Tensor):
    """1-NN accuracy from the distances of blocks of test samples to every train sample (the full matrix of a
    large set would not fit in memory)."""
    block = 1024
    nearest = torch.cat([torch.as_tensor(distances(slice(s, s + block))).argmin(dim=1) for s in range(0, count, block)])
    return {"acc": float((train_y[nearest] == test_y).float().mean())}


def flat(samples, longest: int | None = None) -> Tensor:
    """(N, D) float64 of per-sample arrays, each zero-padded along its last axis to `longest` (default: the
    longest of them)."""
    if isinstance(samples, np.ndarray):
        return torch.from_numpy(samples.reshape(len(samples), -1)).double()
    longest = longest or max(s.shape[-1] for s in samples)
    padded = [np.pad(s, [(0, 0)] * (s.ndim - 1) + [(0, longest - s.shape[-1])]) for s in samples]
    return torch.from_numpy(np.stack(padded).reshape(len(samples), -1)).double()


def nn_euclidean(train, train_y: Tensor, test, test_y: Tensor) -> dict[str, float]:
    """1-NN accuracy by Euclidean distance between flattened samples (zero-padded to the longest)."""
    _single_label("nn", train_y, test_y)
    (train, train_y), (test, test_y) = _labelled(train, train_y), _labelled(test, test_y)
    longest = max(np.shape(s)[-1] for s in [*train, *test])
    bank, queries = flat(train, longest), flat(test, longest)
    return _nearest_accuracy(lambda rows: torch.cdist(queries[rows], bank), len(queries), train_y, test_y)


def nn_dtw(train, train_y: Tensor, test, test_y: Tensor, window: float | None = None) -> dict[str, float]:
    """1-NN accuracy by dependent (multivariate) DTW between (C, T) samples; `window`: Sakoe-Chiba band as a
    fraction of the length (None: no band, the archive's "DTW full")."""
    _single_label("dtw", train_y, test_y)
    if np.ndim(train[0]) != 2:
        shape = np.shape(train[0])
        raise UnsupportedProtocol("dtw", f"DTW needs samples with one time axis (C, T); these are {shape}")
    from contrastlab.metrics.dtw import pairwise_dtw

    (train, train_y), (test, test_y) = _labelled(train, train_y), _labelled(test, test_y)
    train, test = [x.astype(np.float64) for x in train], [x.astype(np.float64) for x in test]
    return _nearest_accuracy(lambda rows: pairwise_dtw(test[rows], train, window), len(test), train_y, test_y)


def logistic(train, train_y, val, val_y, test, test_y, num_classes: int) -> dict[str, float]:
    """The linear probe on the features: `acc` (multi-label: `map`), `l2` chosen on val, and `auroc` where the
    test split holds two classes (of the penalty best by val AUROC, as the `auroc` protocol chooses it)."""
    longest = max(np.shape(s)[-1] for s in [*train, *val, *test])
    train, val, test = (flat(x, longest).float() for x in (train, val, test))
    fit = P.linear_probe(train, train_y, val, val_y, test, test_y, num_classes)
    name = "map" if is_multilabel(train_y) else "top1"
    metrics = {"acc" if name == "top1" else name: fit.metrics[name], "l2": fit.metrics["l2"]}
    try:
        metrics["auroc"] = P.probe_auroc(fit, test_y, num_classes)["auroc"]
    except UnsupportedProtocol:  # one class in test
        pass
    return metrics


def ridge(train, train_y: Tensor, test, test_y: Tensor) -> dict[str, float]:
    """Standardised features (no centring: MiniRocket's are proportions) and RidgeClassifierCV, as aeon's
    MiniRocketClassifier fits them."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _single_label("ridge", train_y, test_y)
    (train, train_y), (test, test_y) = _labelled(train, train_y), _labelled(test, test_y)
    longest = max(np.shape(s)[-1] for s in [*train, *test])
    model = make_pipeline(StandardScaler(with_mean=False), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    model.fit(flat(train, longest).numpy(), train_y.numpy())
    predicted = model.predict(flat(test, longest).numpy())
    return {"acc": float((predicted == test_y.numpy()).mean()), "alpha": float(model[-1].alpha_)}


# -- running them on a DataModule --------------------------------------------------------------------------


def names(datamodule) -> list[str]:
    """Every baseline the data declares, `<features>_<classifier>`, then `supervised`."""
    declared = datamodule.hand_features()
    return [f"{name}_{c}" for name, hand in declared.items() for c in hand.classifiers] + [SUPERVISED]


def label(datamodule, name: str) -> str:
    """What a table calls baseline `name` (or a group of it, `supervised_10pct`)."""
    if name.startswith(SUPERVISED):
        fraction = name.removeprefix(SUPERVISED).strip("_").replace("pct", "% of labels")
        return f"supervised from random init{', ' + fraction if fraction else ''}"
    features, _, classifier = name.rpartition("_")
    return f"{datamodule.hand_features()[features].label}, {CLASSIFIERS[classifier]}"


def headline(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The (metric, value) a table shows of a baseline: its accuracy (multi-label data: its mAP)."""
    key = next((k for k in ("acc", "top1", "map") if k in metrics), None)
    return (key, metrics[key]) if key else None


def check_names(datamodule, wanted: list[str]) -> None:
    known = names(datamodule)
    for name in wanted:
        if name not in known:
            raise UnsupportedProtocol(
                name, f"{datamodule.info.name} declares no such baseline; it has {','.join(known)}"
            )


def run_baselines(
    datamodule,
    wanted: list[str] | None = None,
    *,
    initial_model: torch.nn.Module | None = None,
    options: Any = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """The baselines `wanted` (default: every one the data declares) on `datamodule`'s train/val/test splits:
    (metrics by group, why each baseline not run was skipped). `initial_model`: the run's model as it was
    initialised, for `supervised`; `options`: a `BaselineOptions`, or any object with those attributes
    (`contrastlab eval`'s parsed options)."""
    opts = BaselineOptions.of(options)
    wanted = names(datamodule) if wanted is None else wanted
    check_names(datamodule, wanted)
    info = datamodule.info
    results: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    if info.num_classes == 0:
        return results, {name: f"{info.name} has no labels (data.info.num_classes is 0)" for name in wanted}
    splits = _Splits(datamodule)
    for name in wanted:
        try:
            if name == SUPERVISED:
                results.update(_supervised(datamodule, splits, initial_model, opts, device))
            else:
                results[name] = _hand(datamodule, splits, name, opts)
        except UnsupportedProtocol as err:
            skipped[name] = err.reason
    return results, skipped


class _Splits:
    """Each split's raw samples and each hand feature's transform of them, read and fitted once."""

    def __init__(self, datamodule):
        self.datamodule, self.raw, self.features = datamodule, {}, {}

    def split(self, name: str) -> RawSplit:
        if name not in self.raw:
            try:
                loader = self.datamodule.eval_loader(name)
            except (KeyError, ValueError, NotImplementedError):
                loader = None
            if loader is None or len(loader.dataset) == 0:
                raise UnsupportedProtocol(name, f"{self.datamodule.info.name} has no {name} split")
            if name == "train":
                shape = self.datamodule.info.shape
                values = len(loader.dataset) * math.prod(shape)
                if values > MAX_RAW_VALUES:
                    raise UnsupportedProtocol(
                        name, f"the train split holds {values:.2g} raw values, above {MAX_RAW_VALUES:.0g}: "
                        "too large to read into memory; leave it out with --baselines"
                    )  # fmt: skip
            self.raw[name] = read_split(loader)
        return self.raw[name]

    def transformed(self, features: str, split: str, seed: int):
        if features not in self.features:
            hand = self.datamodule.hand_features()[features]
            with torch_threads_kept():
                self.features[features] = hand.fit(self.split("train").samples, seed)
        key = (features, split)
        if key not in self.features:
            with torch_threads_kept():
                self.features[key] = self.features[features](self.split(split).samples)
        return self.features[key], self.split(split).y


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Run a hand feature's library, then give PyTorch back its thread count: Numba's OpenMP layer (aeon's
    MiniRocket) shares libgomp with PyTorch and leaves one thread per core behind, so that a process held to one
    intra-op thread beside another (`OMP_NUM_THREADS=1`, two at once) spun on both cores, five times slower."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _hand(datamodule, splits: _Splits, name: str, opts: BaselineOptions) -> dict[str, float]:
    features, _, classifier = name.rpartition("_")
    try:
        train, train_y = splits.transformed(features, "train", opts.seed)
        test, test_y = splits.transformed(features, "test", opts.seed)
        if classifier == "logistic":
            val, val_y = splits.transformed(features, "val", opts.seed)
    except UnsupportedProtocol as err:  # a missing split
        raise UnsupportedProtocol(name, f"{err.reason}; {CLASSIFIERS[classifier]} needs it") from None
    if classifier == "nn":
        return nn_euclidean(train, train_y, test, test_y)
    if classifier == "dtw":
        return nn_dtw(train, train_y, test, test_y, opts.dtw_window)
    if classifier == "ridge":
        return ridge(train, train_y, test, test_y)
    return logistic(train, train_y, val, val_y, test, test_y, datamodule.info.num_classes)


def _labels_of(loader: DataLoader) -> RawSplit:
    """The labels and indices of a split, without keeping its samples."""
    ys, idxs = zip(*((torch.as_tensor(b["y"]), torch.as_tensor(b["idx"])) for b in loader))
    return RawSplit([], torch.cat(ys), torch.cat(idxs))


def _supervised(datamodule, splits: _Splits, model, opts: BaselineOptions, device) -> dict[str, dict[str, float]]:
    if model is None:
        raise UnsupportedProtocol(SUPERVISED, "needs the run's model as initialised (initial_model)")
    train = splits.raw.get("train") or _labels_of(datamodule.eval_loader("train"))
    splits.split("test")
    train_loader, test_loader = datamodule.eval_loader("train"), datamodule.eval_loader("test")
    with torch.no_grad():
        from lightning.fabric.utilities.apply_func import move_data_to_device

        model.to(device).eval()
        feature_dim = model.embed(move_data_to_device(next(iter(train_loader)), device)).shape[1]
    num_classes, val_loader = datamodule.info.num_classes, split_loader(datamodule.eval_loader, "val")
    groups = finetune_fractions(
        model, train.y, train.idx, train_loader, test_loader, feature_dim, num_classes, opts, device, val_loader
    )
    return {name.replace("finetune", SUPERVISED, 1): metrics for name, metrics in groups.items()}
