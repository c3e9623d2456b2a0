"""Medical imaging DataModules: MedMNIST `.npz` files (2-D and 3-D), and folders of DICOM or NIfTI studies.

- `MedMNIST`: the MedMNIST v2/v3 files (`{flag}.npz` at 28 px, `{flag}_{size}.npz` at 64/128/224), with
  their official train/val/test splits. Images stay uint8: (1 or 3, H, W) for the 2-D sets, (1, D, H, W)
  for the 3-D ones. Labels stored as (N,) or (N, 1) are class indices; ChestMNIST's (N, 14) are multi-hot.
  The task type of each set (MedMNIST's INFO) is in `DataInfo.extra["task"]`. Nothing downloads.
- `MedicalStudies`: a folder of studies (a NIfTI file or a folder holding one DICOM series each) listed in a
  CSV with a path column, an optional label column, an optional group column (patient, subject) exposed as
  the integer sample key `group` (-1 where unknown), and an optional split column.

A study is read by datamodules/studies.py (`StudyReader`: pydicom or nibabel, resampled, intensities on a
common scale, centre-cropped or padded to a fixed shape), which is all the decoding a worker does: views are
made later, on the device (`augment/volume.py`; grey 2-D images: `augment/medical.py`). The intensity scale is the
data's by the contract's rule (contrastlab/contract.py: what comes before the views is the data's; the views'
per-channel normalisation is the pipeline's). A study that cannot be read stops the run naming it, or is skipped
(`on_bad_file`).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from contrastlab.contract import DataInfo
from contrastlab.datamodules.badfiles import BadFiles, check_policy, skip_collate
from contrastlab.datamodules.base import ContrastiveDataModule, TensorSamples
from contrastlab.datamodules.manifest import need_columns, read_manifest
from contrastlab.datamodules.studies import StudyReader, normalise_intensity
from contrastlab.errors import DataError

VOLUME_VIEWS = "contrastlab.augment.volume.VolumeViews"
GREY_VIEWS = "contrastlab.augment.medical.MedicalImageViews"
COLOUR_VIEWS = "contrastlab.augment.vision.ImageViews"
MEDMNIST_URL = "https://zenodo.org/records/10519652"


@dataclass(frozen=True)
class MedMNISTSet:
    task: str
    num_classes: int  # classes, or labels of a multi-label set
    channels: int = 1
    dims: int = 2


# MedMNIST v2/v3's INFO (medmnist/info.py): task type, classes, channels, and whether it is a 3-D set.
MEDMNIST_SETS: dict[str, MedMNISTSet] = {
    "pathmnist": MedMNISTSet("multi-class", 9, 3),
    "chestmnist": MedMNISTSet("multi-label, binary-class", 14),
    "dermamnist": MedMNISTSet("multi-class", 7, 3),
    "octmnist": MedMNISTSet("multi-class", 4),
    "pneumoniamnist": MedMNISTSet("binary-class", 2),
    "retinamnist": MedMNISTSet("ordinal-regression", 5, 3),
    "breastmnist": MedMNISTSet("binary-class", 2),
    "bloodmnist": MedMNISTSet("multi-class", 8, 3),
    "tissuemnist": MedMNISTSet("multi-class", 8),
    "organamnist": MedMNISTSet("multi-class", 11),
    "organcmnist": MedMNISTSet("multi-class", 11),
    "organsmnist": MedMNISTSet("multi-class", 11),
    "organmnist3d": MedMNISTSet("multi-class", 11, dims=3),
    "nodulemnist3d": MedMNISTSet("binary-class", 2, dims=3),
    "adrenalmnist3d": MedMNISTSet("binary-class", 2, dims=3),
    "fracturemnist3d": MedMNISTSet("multi-class", 3, dims=3),
    "vesselmnist3d": MedMNISTSet("binary-class", 2, dims=3),
    "synapsemnist3d": MedMNISTSet("binary-class", 2, dims=3),
}


def npz_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of array `key` in an .npz file, read from its .npy header without loading the array."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read_header(member)
    except KeyError:
        raise DataError(
            f"{path} holds no {key!r} array; a MedMNIST file has {{train,val,test}}_{{images,labels}}"
        ) from None
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise DataError(f"{path} is not a readable .npz file ({err}); download it again") from err
    return tuple(shape)


class MedMNIST(ContrastiveDataModule):
    """A MedMNIST v2/v3 `.npz` file, 2-D or 3-D, at any size, with its official splits.

    Args:
        flag: the set's name (`breastmnist`, `chestmnist`, `organmnist3d`, ...); with `size` it names the file.
        root: the folder holding `{flag}.npz` (28 px) or `{flag}_{size}.npz` (MedMNIST+ sizes 64, 128, 224).
        size: 28 (default), 64, 128 or 224.
        path: the file itself, instead of root/flag/size (its stem then gives the flag).
        max_train_samples: keep the first this many training samples, for quick runs.
        mean, std: per-channel statistics of the images in [0, 1] that the views normalise with.
    """

    def __init__(
        self,
        flag: str = "breastmnist",
        root: str = "data/medmnist",
        size: int = 28,
        path: str | None = None,
        max_train_samples: int | None = None,
        mean: float = 0.5,
        std: float = 0.25,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if path is not None:
            self.path = Path(path)
            stem, _, suffix = self.path.name.removesuffix(".npz").rpartition("_")
            flag = stem if stem and suffix.isdigit() else self.path.name.removesuffix(".npz")
        else:
            name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
            self.path = Path(root) / name
        self.flag = flag.lower()
        self.size = size
        self.max_train_samples = max_train_samples
        self.mean, self.std = mean, std
        self._info: DataInfo | None = None

    def _require_file(self) -> None:
        if not self.path.is_file():
            raise DataError(
                f"MedMNIST file {self.path} not found: download {self.path.name} (MedMNIST v3, {MEDMNIST_URL}) and "
                "put it there, or set data.init_args.root (or path) to where it is; nothing downloads"
            )

    @property
    def info(self) -> DataInfo:
        if self._info is None:
            self._require_file()
            images = npz_shape(self.path, "train_images")
            labels = npz_shape(self.path, "train_labels")
            known = MEDMNIST_SETS.get(self.flag)
            dims = known.dims if known else (3 if self.flag.endswith("3d") else 2)
            if dims == 3:
                if len(images) != 4:
                    raise DataError(f"{self.path}: 3-D images must be stored (N, D, H, W), found {images}")
                shape, channels = (1, *images[1:]), 1
            else:
                if len(images) not in (3, 4):
                    raise DataError(f"{self.path}: 2-D images must be stored (N, H, W) or (N, H, W, 3), found {images}")
                channels = images[3] if len(images) == 4 else 1
                shape = (channels, images[1], images[2])
            multilabel = len(labels) == 2 and labels[1] > 1
            if known is not None:
                num_classes, task = known.num_classes, known.task
            else:  # a file of this layout but not a MedMNIST set: classes from its labels
                num_classes = labels[1] if multilabel else int(self._array("train_labels").max()) + 1
                task = "multi-label, binary-class" if multilabel else "multi-class"
            views = VOLUME_VIEWS if dims == 3 else (GREY_VIEWS if channels == 1 else COLOUR_VIEWS)
            self._info = DataInfo(
                self.flag,
                "volume" if dims == 3 else "image",
                tuple(int(s) for s in shape),
                num_classes,
                multilabel=multilabel,
                mean=(self.mean,) * channels,
                std=(self.std,) * channels,
                views=views,
                extra={"task": task, "source": "medmnist"},
            )
        return self._info

    def _array(self, key: str) -> np.ndarray:
        """One array of the file, read when first asked for (a 224 px set's splits are gigabytes each)."""
        self._require_file()
        try:
            with np.load(self.path) as data:
                if key not in data.files:
                    raise DataError(
                        f"{self.path} holds no {key!r} array; a MedMNIST file has {{train,val,test}}_{{images,labels}}"
                    )
                return data[key]
        except DataError:  # a FileNotFoundError, hence an OSError: not to be re-wrapped below
            raise
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise DataError(f"{self.path} is not a readable .npz file ({err}); download it again") from err

    def load_split(self, split: str) -> Dataset:
        info = self.info
        images, labels = self._array(f"{split}_images"), self._array(f"{split}_labels")
        x = torch.from_numpy(np.ascontiguousarray(images))
        if info.sample_dims == 2:
            x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)
        else:
            x = x.unsqueeze(1)
        y = torch.from_numpy(np.asarray(labels)).long()
        if not info.multilabel:
            y = y.reshape(len(y))  # (N,) and (N, 1) alike
        if split == "train" and self.max_train_samples is not None:
            x, y = x[: self.max_train_samples], y[: self.max_train_samples]
        return TensorSamples(x.contiguous(), y)


class StudySamples(Dataset):
    """Studies read on demand: `{"x": (1, D, H, W) float, "y", "idx", "group"}`; `bad` is the bad-file policy."""

    def __init__(self, paths, labels, groups, shape, spacing, intensity, bad: BadFiles | None = None):
        self.paths, self.labels, self.groups = paths, labels, groups
        self.shape, self.spacing, self.intensity = shape, spacing, intensity
        self.read = StudyReader(shape, spacing, intensity)
        self.bad_files = bad or BadFiles("stop", "study", len(paths))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        x = self.bad_files.read(i, self.paths[i], self.read)
        return None if x is None else {"x": x, "y": int(self.labels[i]), "idx": i, "group": int(self.groups[i])}


class MedicalStudies(ContrastiveDataModule):
    """A folder of studies (NIfTI files or DICOM series folders) listed in a CSV.

    The CSV (default `<root>/labels.csv`, read by datamodules/manifest.py) has a column of study paths (relative
    to `root`), and optionally a label, a group and a split column. Labels may be any strings or numbers
    (classes in the manifest's order: numbers by value, then text); a group (patient, subject) becomes the
    integer sample key `group`, which `positives_key: group` makes the positives of a multi-positive loss;
    without a split column the split is drawn by group (seeded, datamodules/splits.py), so one patient's
    studies never straddle train and test; with one but no val rows, val is a seeded share of train's groups.

    Args:
        root: the folder of studies.
        labels_csv: the CSV (default root/labels.csv).
        path_column, label_column, group_column, split_column: the CSV's column names; label, group and
            split columns are optional (None, or absent from the CSV).
        shape: (D, H, W) every volume is centre-cropped or padded to, after resampling.
        spacing: (d, h, w) millimetres to resample to (None: as stored).
        intensity: `ct:<preset>` (a CT window: lung, mediastinum, abdomen, brain, bone, ...), `mr`
            (foreground z-scores), `minmax` or `none`.
        val_fraction, test_fraction: of the groups, when the CSV has no split column.
        on_bad_file: `stop` (the default: end the run naming the study) or `skip` (drop it from its batch, count
            it), for a study that cannot be read.
    """

    def __init__(
        self,
        root: str,
        labels_csv: str | None = None,
        path_column: str = "path",
        label_column: str | None = "label",
        group_column: str | None = None,
        split_column: str | None = "split",
        shape: tuple[int, int, int] = (32, 32, 32),
        spacing: tuple[float, float, float] | None = None,
        intensity: str = "minmax",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        name: str = "studies",
        on_bad_file: str = "stop",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.on_bad_file = check_policy(on_bad_file)
        normalise_intensity(torch.zeros(2), intensity)  # refuse a bad mode before any file is read
        self.root = Path(root)
        self.csv_path = Path(labels_csv) if labels_csv else self.root / "labels.csv"
        self.columns = (path_column, label_column, group_column, split_column)
        self.shape = tuple(int(s) for s in shape)
        self.spacing = tuple(float(s) for s in spacing) if spacing is not None else None
        self.intensity = intensity
        self.fractions = (val_fraction, test_fraction)
        self.name = name
        self._table: dict[str, list] | None = None

    def _rows(self) -> dict[str, list]:
        """The CSV as columns: paths, label indices (-1 unlabelled), group ids (-1 unknown), splits; and classes."""
        if self._table is not None:
            return self._table
        path_col, label_col, group_col, split_col = self.columns
        manifest = read_manifest(
            self.csv_path, self.root, path_col, label_col, split_col, group_col, "data.labels_csv", optional_label=True
        )
        need_columns(manifest.columns, [("group_column", group_col)], self.csv_path)
        split_of = {}
        for name, chosen in manifest.splits(self.seed, *self.fractions).items():
            split_of.update({id(r): name for r in chosen})
        self._table = {
            "paths": [r.path for r in manifest.rows],
            "labels": [manifest.label(r) for r in manifest.rows],
            "groups": [manifest.group(r) for r in manifest.rows],
            "splits": [split_of[id(r)] for r in manifest.rows],
            "classes": manifest.classes,
            "group_names": manifest.groups,
        }
        return self._table

    @property
    def info(self) -> DataInfo:
        classes = self._rows()["classes"]
        mean, std = ((0.0,), (1.0,)) if self.intensity == "mr" else ((0.5,), (0.25,))
        if self.intensity == "none":
            mean, std = (0.0,), (1.0,)
        extra = {"intensity": self.intensity, "spacing": list(self.spacing) if self.spacing else None}
        return DataInfo(
            self.name, "volume", (1, *self.shape), len(classes), mean=mean, std=std, views=VOLUME_VIEWS, extra=extra
        )

    def load_split(self, split: str) -> Dataset:
        table = self._rows()
        chosen = [i for i, s in enumerate(table["splits"]) if s == split]
        return StudySamples(
            [table["paths"][i] for i in chosen],
            [table["labels"][i] for i in chosen],
            [table["groups"][i] for i in chosen],
            self.shape,
            self.spacing,
            self.intensity,
            BadFiles(self.on_bad_file, "study", len(chosen)),
        )

    def collate(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        return skip_collate(samples)

    def group_names(self) -> list[str]:
        """The group (patient, subject) of each group id."""
        return self._rows()["group_names"]


def save_medmnist(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write arrays in MedMNIST's .npz layout (`{split}_images`, `{split}_labels`): for tests and converters."""
    arrays = {}
    for split, (images, labels) in splits.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    Path(path).write_bytes(buffer.getvalue())
