"""Time-series DataModules: UCR/UEA archive sets by name, files in the archive's formats, NumPy/CSV arrays.

Every sample is a float32 tensor (C, T): univariate series have C = 1. Missing values (NaN in the files)
and the padding of unequal-length series are NaN in `x`, and the batch's `mask` (B, T) is False there
(`pad_collate` with NaN padding, then NaN steps masked too): views and the series backbones carry the
mask inside the tensor (`~x.isnan().any(1)`), so any method's `encode` works on masked series.

Normalisation is part of the data here, not of the views (the contract's rule, contrastlab/contract.py: what comes
before the views is the data's): a per-series z-score after a scaling view would undo the scaling, so series
are z-normalised once when read (`normalize: series`, the UCR convention),
or by the train split's per-channel mean and std (`normalize: dataset`, TS2Vec's for UEA sets), or left as
read (`none`); `auto` (the default) is `series` for univariate and `dataset` for multivariate data.

    data:
      class_path: contrastlab.datamodules.series.UCR
      init_args: {name: GunPoint}            # aeon ships GunPoint, ArrowHead, BasicMotions, JapaneseVowels...

Nothing downloads unless `download: true`; a set neither shipped with aeon nor under `root` is an error
saying which files to put where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from contrastlab.contract import DataInfo, HandFeatures, Samples, as_they_are
from contrastlab.datamodules.base import ContrastiveDataModule, pad_collate
from contrastlab.datamodules.manifest import class_order
from contrastlab.datamodules.series_files import Arrays, read_series_file
from contrastlab.datamodules.splits import seeded_split
from contrastlab.errors import ConfigError, DataError

SERIES_VIEWS = "contrastlab.augment.series.SeriesViews"
MINIROCKET_MIN_LENGTH = 9  # its kernels' length
NORMALIZE = ("auto", "series", "dataset", "none")
UNEQUAL = ("pad", "crop")
VAL_SIZE = 0.2  # of train, held out for validation unless a config says 0 (the papers' protocol)


class SeriesSamples(Dataset):
    """Series of possibly unequal length held in memory: `x` (C, T_i) float32 with NaN where missing."""

    def __init__(self, x: list[Tensor] | Tensor, y: Tensor):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} series but {len(y)} labels")
        self.x, self.y = x, y
        self.labels = y.tolist()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "y": int(self.y[i]), "idx": i}


def series_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad to the longest series with NaN and mask (B, T) padded and missing steps (NaN in any channel)."""
    batch = pad_collate(samples, pad_value=float("nan"))
    batch["mask"] = batch["mask"] & ~batch["x"].isnan().any(dim=1)
    return batch


# -- the DataModules -----------------------------------------------------------------------------


class SeriesData(ContrastiveDataModule):
    """Labelled series in memory; subclasses say how to read the train and test splits (`read`).

    Args:
        normalize: "series" (z-score each series and channel over its observed steps), "dataset" (the train
            split's per-channel mean and std), "none", or "auto" (the default, the archives' and TS2Vec's
            conventions): "series" for univariate data (UCR), "dataset" for multivariate (UEA), whose channels'
            relative scales carry information.
        unequal: what to do with series of unequal length: "pad" (NaN-pad each batch to its longest and
            mask, `DataInfo.shape` has T = 0) or "crop" (keep every series' first T steps, T the shortest).
        val_size: the fraction of train held out for validation (stratified by class, seeded by `seed`:
            datamodules/splits.py), 0.2 by default. The archives have no validation split, and a run that picks
            its best checkpoint (or a probe's penalty) on `val/*` must not pick it on test; the held-out series
            are left out of training, of the protocols' train features and of the baselines alike. 0 is the
            papers' protocol (TS2Vec, SoftCLT, TS-TCC: all of train, no validation, the last checkpoint):
            validation then reads the test split, so pair it with `trainer.limit_val_batches: 0` and evaluate
            the last checkpoint (configs/shared/recipes/ucr_papers_protocol.yaml does both).
    """

    name = "series"

    def __init__(self, normalize: str = "auto", unequal: str = "pad", val_size: float = VAL_SIZE, **kwargs):
        super().__init__(**kwargs)
        if normalize not in NORMALIZE:
            raise ConfigError(f"data.normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        if unequal not in UNEQUAL:
            raise ConfigError(f"data.unequal must be one of {', '.join(UNEQUAL)}, got {unequal!r}")
        if not 0 <= val_size < 1:
            raise ConfigError(f"data.val_size must be a fraction in [0, 1), got {val_size}")
        self.normalize, self.unequal, self.val_size = normalize, unequal, val_size
        self._arrays: dict[str, tuple[list[Tensor], Tensor]] | None = None
        self._info: DataInfo | None = None

    def read(self, split: str) -> Arrays:
        """The series and labels of "train" or "test"."""
        raise NotImplementedError

    # what the data is: read once (archive sets are small), on first use
    def _load(self) -> dict[str, tuple[list[Tensor], Tensor]]:
        if self._arrays is not None:
            return self._arrays
        raw = {split: self.read(split) for split in ("train", "test")}
        channels = {s.shape[0] for split in raw.values() for s in split[0]}
        if len(channels) != 1:
            raise DataError(f"{self.name}: series with different channel counts {sorted(channels)}; give one count")
        classes = self._classes(raw)
        if self.normalize == "auto":
            self.normalize = "series" if next(iter(channels)) == 1 else "dataset"
        series = {
            split: [torch.from_numpy(np.ascontiguousarray(s, np.float32)) for s in x] for split, (x, _) in raw.items()
        }
        if self.unequal == "crop":
            shortest = min(s.shape[-1] for split in series.values() for s in split)
            series = {split: [s[:, :shortest] for s in x] for split, x in series.items()}
        series = self._normalized(series)
        self._arrays = {
            split: (series[split], self._indices(y, classes, len(series[split]))) for split, (_, y) in raw.items()
        }
        lengths = [s.shape[-1] for split in series.values() for s in split]
        if min(lengths) < 1:
            raise DataError(f"{self.name}: a series with no observed value; remove it")
        missing = any(bool(s.isnan().any()) for split in series.values() for s in split)
        equal = min(lengths) == max(lengths)
        mean, std = self._stats(series["train"])
        self._info = DataInfo(
            self.name,
            "series",
            (next(iter(channels)), max(lengths) if equal else 0),
            len(classes),
            mean=mean,
            std=std,
            views=SERIES_VIEWS,
            extra={
                "normalize": self.normalize,
                "equal_length": equal,
                "missing": missing,
                "min_length": min(lengths),
                "max_length": max(lengths),
                "classes": list(classes),
            },
        )
        return self._arrays

    def _classes(self, raw: dict[str, Arrays]) -> list[str]:
        train_y, test_y = raw["train"][1], raw["test"][1]
        if train_y is None:
            return []
        classes = class_order(train_y.tolist())  # numbers by value, then text (datamodules/manifest.py)
        unseen = sorted(set((test_y if test_y is not None else np.array([])).tolist()) - set(classes))
        if unseen:
            raise DataError(f"{self.name}: test labels {unseen[:5]} never appear in train; the splits disagree")
        return classes

    @staticmethod
    def _indices(y: np.ndarray | None, classes: list[str], count: int) -> Tensor:
        if y is None or not classes:
            return torch.full((count,), -1, dtype=torch.long)
        index = {c: i for i, c in enumerate(classes)}
        return torch.tensor([index[v] for v in y.tolist()], dtype=torch.long)

    def _normalized(self, series: dict[str, list[Tensor]]) -> dict[str, list[Tensor]]:
        if self.normalize == "series":
            return {split: [_zscore(s) for s in x] for split, x in series.items()}
        if self.normalize == "dataset":
            mean, std = (torch.tensor(v)[:, None] for v in self._stats(series["train"]))
            return {split: [(s - mean) / std for s in x] for split, x in series.items()}
        return series

    @staticmethod
    def _stats(train: list[Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        values = torch.cat(train, dim=1).double()  # (C, sum of lengths)
        observed = ~values.isnan()
        count = observed.sum(dim=1).clamp(min=1)
        mean = values.nan_to_num().sum(dim=1) / count
        var = ((values - mean[:, None]).nan_to_num() ** 2).sum(dim=1) / count
        std = var.sqrt().clamp(min=1e-8)
        return tuple(mean.tolist()), tuple(std.tolist())

    @property
    def info(self) -> DataInfo:
        self._load()
        assert self._info is not None
        return self._info

    def hand_features(self) -> dict[str, HandFeatures]:
        """The series themselves (1-NN Euclidean and DTW, the archive's baselines) and MiniRocket's features
        with a ridge classifier: the strong reference a time-series practitioner runs first."""
        return {
            "raw": HandFeatures("raw", as_they_are, ("nn", "dtw")),
            "minirocket": HandFeatures("MiniRocket", minirocket, ("ridge",)),
        }

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        extra = self.info.extra
        if extra["equal_length"] and not extra["missing"]:
            return default_collate(samples)
        return series_collate(samples)

    def load_split(self, split: str) -> Dataset:
        arrays = self._load()
        if split == "test" or (split == "val" and self.val_size == 0):
            return self._samples(*arrays["test"])
        x, y = arrays["train"]
        if self.val_size == 0:
            return self._samples(x, y)
        chosen = seeded_split(len(y), val=self.val_size, seed=self.seed, stratify=y.tolist())[split]
        return self._samples([x[i] for i in chosen], y[torch.from_numpy(chosen)])

    def _samples(self, x: list[Tensor], y: Tensor) -> Dataset:
        return SeriesSamples(x, y)


def _zscore(s: Tensor) -> Tensor:
    """Each channel of one series to mean 0 and std 1 over its observed steps (a constant channel to 0)."""
    observed = ~s.isnan()
    count = observed.sum(dim=1, keepdim=True).clamp(min=1)
    mean = s.nan_to_num().sum(dim=1, keepdim=True) / count
    std = (((s - mean).nan_to_num() ** 2).sum(dim=1, keepdim=True) / count).sqrt()
    return (s - mean) / torch.where(std > 1e-8, std, torch.ones_like(std))


def minirocket(train: Samples, seed: int):
    """`HandFeatures.fit` of aeon's MiniRocket (Dempster et al. 2021), fitted on the train series. MiniRocket
    takes equal lengths: every series is zero-padded (or cut) to the longest train series, at least its kernel's
    length; a missing step counts as 0, as the raw baselines count it."""
    from aeon.transformations.collection.convolution_based import MiniRocket

    length = max(MINIROCKET_MIN_LENGTH, max(s.shape[-1] for s in train))

    def stacked(samples: Samples) -> np.ndarray:
        cut = [s[:, :length] for s in samples]
        return np.stack([np.pad(s, [(0, 0), (0, length - s.shape[-1])]) for s in cut]).astype(np.float32)

    transform = MiniRocket(random_state=seed).fit(stacked(train))
    return lambda samples: transform.transform(stacked(samples))


def aeon_data_dir() -> Path:
    import aeon.datasets

    return Path(aeon.datasets.__file__).parent / "data"


class UCR(SeriesData):
    """A UCR (univariate) or UEA (multivariate) archive set by name, with its official train/test split.

    Args:
        name: the archive's name (GunPoint, ArrowHead, BasicMotions, JapaneseVowels, ...).
        root: a folder holding `<name>/<name>_TRAIN.ts` and `_TEST.ts` (or `.tsv`/`.arff`), as the archive's
            zips unpack; sets shipped inside aeon are found without it.
        download: fetch a missing set from timeseriesclassification.com into `root` (needs network access).
        (others: see SeriesData)
    """

    def __init__(self, name: str = "GunPoint", root: str | None = None, download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.name, self.root, self.download = name, root, download

    def _folders(self) -> list[Path]:
        return ([Path(self.root) / self.name, Path(self.root)] if self.root else []) + [aeon_data_dir() / self.name]

    def _find(self, split: str) -> Path | None:
        for folder in self._folders():
            for suffix in (".ts", ".tsv", ".arff"):
                path = folder / f"{self.name}_{split.upper()}{suffix}"
                if path.is_file():
                    return path
        return None

    def read(self, split: str) -> Arrays:
        path = self._find(split)
        if path is None and self.download:
            self._download()
            path = self._find(split)
        if path is None:
            where = Path(self.root or "data/ucr") / self.name
            raise DataError(
                f"UCR/UEA set {self.name!r}: no {self.name}_{split.upper()}.ts (or .tsv/.arff) under "
                f"{where}/ nor among aeon's shipped sets; unzip the set from timeseriesclassification.com "
                f"into {where}/ and set data.root, or set data.download true (needs network access)"
            )
        return read_series_file(path)

    def _download(self) -> None:
        from aeon.datasets import load_classification

        if not self.root:
            raise ConfigError("data.download needs data.root: the folder to unpack the set into")
        try:
            load_classification(self.name, extract_path=self.root)
        except Exception as err:
            fix = f"fetch it by hand into {self.root}"
            raise DataError(f"UCR/UEA set {self.name!r}: download failed ({err}); {fix}") from err


class SeriesFiles(SeriesData):
    """Series from files: the archive's formats (.ts, .tsv, .arff) or arrays (.npy, .npz, .csv).

    Args:
        train, test: the files of each split (the same format or not).
        name: the dataset's name (the MLflow experiment); defaults to the train file's stem.
        label_column: .csv/.tsv: the column holding the label (0, the archive's layout), or null for none.
        train_labels, test_labels: .npy: a labels file for each split (.npy, or text one label a line).
        (others: see SeriesData)
    """

    def __init__(
        self,
        train: str,
        test: str,
        name: str | None = None,
        label_column: int | None = 0,
        train_labels: str | None = None,
        test_labels: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.files = {"train": train, "test": test}
        self.labels = {"train": train_labels, "test": test_labels}
        self.name = name or Path(train).stem.removesuffix("_TRAIN")
        self.label_column = label_column

    def read(self, split: str) -> Arrays:
        return read_series_file(self.files[split], self.label_column, self.labels[split])
