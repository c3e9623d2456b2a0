"""Medical imaging DataModules: MedMNIST `.npz` files (2-D and 3-D), and folders of DICOM or NIfTI studies.

- `MedMNIST`: the MedMNIST v2/v3 files (`{flag}.npz` at 28 px, `{flag}_{size}.npz` at 64/128/224), with
  their official train/val/test splits. Images stay uint8: (1 or 3, H, W) for the 2-D sets, (1, D, H, W)
  for the 3-D ones. Labels stored as (N,) or (N, 1) are class indices; ChestMNIST's (N, 14) are multi-hot.
  The task type of each set (MedMNIST's INFO) is in `DataInfo.extra["task"]`. Nothing downloads.
- `MedicalStudies`: a folder of studies (a NIfTI file or a folder holding one DICOM series each) listed in a
  CSV with a path column, an optional label column, an optional group column (patient, subject) exposed as
  the integer sample key `group` (-1 where unknown), and an optional split column.

Reading a study (`read_dicom_series`, `read_nifti`) uses the libraries for what they are for: pydicom decodes
slices and we sort them by their position along the slice normal and apply each slice's rescale slope and
intercept; nibabel reorients a NIfTI image to its closest canonical (RAS+) axes and resamples it to a target
spacing (`nibabel.processing`, scipy underneath). Intensities are then put on a common scale (a CT window
preset, MR z-scores over the foreground, or min-max) and the volume is centre-cropped or padded to a fixed
shape, which is all the decoding a worker does: views are made later, on the device (`augment/volume.py`).
The intensity scale is the data's by the contract's rule (augment/base.py: what comes before the views is the
data's; the views' per-channel normalisation is the pipeline's).
Any file pydicom or nibabel cannot use is reported by its path as one error line.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from contrastlab.datamodules.badfiles import BadFiles, check_policy, skip_collate
from contrastlab.datamodules.base import ContrastiveDataModule, DataInfo, TensorSamples
from contrastlab.datamodules.manifest import need_columns, read_manifest
from contrastlab.errors import ConfigError, DataError

VOLUME_VIEWS = "contrastlab.augment.volume.VolumeViews"
GREY_VIEWS = "contrastlab.augment.volume.MedicalImageViews"
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


# -- reading studies ---------------------------------------------------------------------------------

# CT windows (level, width) in Hounsfield units, the usual radiology presets.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (50.0, 400.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}


def ct_window(hu: Tensor, preset: str | tuple[float, float]) -> Tensor:
    """Hounsfield units -> [0, 1] through a window (level, width): level - width/2 -> 0, level + width/2 -> 1."""
    if isinstance(preset, str):
        if preset not in CT_WINDOWS:
            raise ConfigError(f"CT window {preset!r} is not a preset; choose from {', '.join(CT_WINDOWS)}")
        preset = CT_WINDOWS[preset]
    level, width = preset
    return ((hu - (level - width / 2)) / width).clamp(0, 1)


def mr_zscore(x: Tensor, foreground: float = 0.0) -> Tensor:
    """MR intensities as z-scores over the foreground voxels (> `foreground`), the background set to 0 after."""
    mask = x > foreground
    values = x[mask] if mask.any() else x.flatten()
    z = (x - values.mean()) / values.std().clamp(min=1e-6)
    return torch.where(mask, z, torch.zeros_like(z)) if mask.any() else z


def normalise_intensity(x: Tensor, mode: str) -> Tensor:
    """`none`, `minmax` (to [0, 1]), `mr` (foreground z-scores) or `ct:<preset>` (a CT window)."""
    if mode == "none":
        return x
    if mode == "minmax":
        low, high = x.min(), x.max()
        return (x - low) / (high - low).clamp(min=1e-6)
    if mode == "mr":
        return mr_zscore(x)
    if mode.startswith("ct:"):
        return ct_window(x, mode[3:])
    raise ConfigError(f"data.intensity={mode!r}: use none, minmax, mr or ct:<preset> ({', '.join(CT_WINDOWS)})")


@dataclass
class Volume:
    """A decoded study: voxels (D, H, W) float32 and their spacing (d, h, w) in millimetres."""

    voxels: Tensor
    spacing: tuple[float, float, float]
    modality: str = ""


def _dicom_error(path: Path, what: str) -> DataError:
    return DataError(f"DICOM {path}: {what}")


def read_dicom_slice(path: Path):
    """One DICOM file with its pixels decoded; every failure is a DataError naming the file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise _dicom_error(path, "not a DICOM file (no DICM preamble); remove it from the series") from None
    except Exception as err:  # truncated or malformed files fail in many ways inside pydicom
        raise _dicom_error(path, f"unreadable ({type(err).__name__}: {err}); remove or replace the file") from err
    if "PixelData" not in ds:
        kind = ds.get("Modality", "?")
        raise _dicom_error(path, f"holds no image (no PixelData; modality {kind}); remove it from the series")
    try:
        pixels = ds.pixel_array
    except Exception as err:
        raise _dicom_error(path, f"its pixels cannot be decoded ({type(err).__name__}: {err})") from err
    if pixels.ndim != 2:
        raise _dicom_error(path, f"is not a single grey slice (pixel array {pixels.shape}); give one slice per file")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return ds, pixels.astype(np.float32) * slope + intercept


def read_dicom_series(files: list[Path] | Path) -> Volume:
    """A DICOM series (a folder or a list of files, one slice each) as a volume (D, H, W).

    Slices are sorted by their position along the slice normal (ImagePositionPatient projected on the
    cross product of ImageOrientationPatient's row and column directions), else by InstanceNumber; each
    slice's RescaleSlope/RescaleIntercept is applied (CT in Hounsfield units). Files of another series or
    another slice size, and files that are not DICOM images, are refused by path.
    """
    if isinstance(files, Path):
        if not files.is_dir():
            raise DataError(f"DICOM series {files} not found: give a folder of .dcm files")
        files = sorted(p for p in files.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError("DICOM series: no files given")
    slices = [(path, *read_dicom_slice(path)) for path in files]
    # The files that disagree with most of the folder are the intruders, whatever their names sort as.
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds, _ in slices).most_common(1)[0][0]
    size = Counter(pixels.shape for _, _, pixels in slices).most_common(1)[0][0]
    for path, ds, pixels in slices:
        if str(ds.get("SeriesInstanceUID", "")) != series:
            raise _dicom_error(
                path, "belongs to another series than most files of its folder; keep one series per folder"
            )
        if pixels.shape != size:
            raise _dicom_error(
                path, f"a slice of {pixels.shape} pixels in a series of {size}; keep one series per folder"
            )
    first = slices[0][1]

    def position(ds) -> float:
        orientation, origin = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
        if orientation is not None and origin is not None:
            normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
            return float(np.dot(normal, np.asarray(origin, float)))
        return float(ds.get("InstanceNumber", 0) or 0)

    slices.sort(key=lambda item: position(item[1]))
    positions = [position(ds) for _, ds, _ in slices]
    gaps = np.diff(positions)
    thickness = float(first.get("SliceThickness", 1) or 1)
    depth = float(np.median(np.abs(gaps))) if len(gaps) and np.median(np.abs(gaps)) > 0 else thickness
    row, col = (float(s) for s in first.get("PixelSpacing", (1, 1)))
    voxels = torch.from_numpy(np.stack([pixels for _, _, pixels in slices]))
    return Volume(voxels, (depth, row, col), str(first.get("Modality", "")))


def read_nifti(path: Path, spacing: tuple[float, float, float] | None = None, frame: int = 0) -> Volume:
    """A NIfTI volume reoriented to its closest canonical orientation (RAS+, `nibabel.as_closest_canonical`),
    resampled to `spacing` (mm, in (D, H, W) order) by `nibabel.processing.resample_to_output` when given,
    and returned as (D, H, W) = (superior, anterior, right) voxels; a 4-D image gives its `frame`-th volume."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        if len(image.shape) == 4:
            image = image.slicer[..., frame]
        if len(image.shape) != 3:
            raise DataError(f"NIfTI {path}: a {len(image.shape)}-D image; give a 3-D (or 4-D) volume")
        image = nib.as_closest_canonical(image)
        if spacing is not None:
            from nibabel.processing import resample_to_output

            # nibabel's axes are (R, A, S); ours are (D, H, W) = (S, A, R).
            image = resample_to_output(image, voxel_sizes=tuple(spacing[::-1]), order=1)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"NIfTI {path} not found: check the path column of the labels CSV") from None
    except Exception as err:  # nibabel's ImageFileError, a truncated gzip, ...
        raise DataError(f"NIfTI {path}: unreadable ({type(err).__name__}: {err})") from err
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    voxels = torch.from_numpy(np.ascontiguousarray(data.transpose(2, 1, 0)))
    return Volume(voxels, (zooms[2], zooms[1], zooms[0]))


def read_study(path: Path, spacing: tuple[float, float, float] | None = None) -> Volume:
    """A study by its path: a folder is a DICOM series, `.nii`/`.nii.gz` NIfTI, `.dcm` a single DICOM slice."""
    name = path.name.lower()
    if path.is_dir():
        volume = read_dicom_series(path)
    elif name.endswith((".nii", ".nii.gz")):
        return read_nifti(path, spacing)
    elif name.endswith(".dcm"):
        volume = read_dicom_series([path])
    elif not path.exists():
        raise DataError(f"study {path} not found: check the path column of the labels CSV")
    else:
        raise DataError(f"study {path}: not a NIfTI file (.nii, .nii.gz), a DICOM file (.dcm) nor a DICOM folder")
    if spacing is not None:
        volume = resample(volume, spacing)
    return volume


def resample(volume: Volume, spacing: tuple[float, float, float]) -> Volume:
    """A DICOM volume at a new spacing (trilinear): DICOM sorts slices but carries no nibabel image."""
    size = [max(1, round(n * s / t)) for n, s, t in zip(volume.voxels.shape, volume.spacing, spacing)]
    voxels = F.interpolate(volume.voxels[None, None], size=size, mode="trilinear", align_corners=False)[0, 0]
    return Volume(voxels, tuple(spacing), volume.modality)


def crop_or_pad(x: Tensor, shape: tuple[int, ...], fill: float = 0.0) -> Tensor:
    """x centre-cropped and/or padded (with `fill`) to `shape` on its last len(shape) dimensions."""
    for axis, target in zip(range(x.ndim - len(shape), x.ndim), shape):
        size = x.shape[axis]
        if size > target:
            x = x.narrow(axis, (size - target) // 2, target)
        elif size < target:
            before = (target - size) // 2
            pad = [0, 0] * (x.ndim - 1 - axis) + [before, target - size - before]
            x = F.pad(x, pad, value=fill)
    return x


class StudyReader:
    """A study's path -> (1, D, H, W) float: read (`read_study`, resampled to `spacing`), intensities normalised
    (`normalise_intensity`), centre-cropped or padded to `shape` (padding: 0, or the minimum after min-max or a
    CT window). Picklable, for loader workers; the paired DataModule reads its volumes with it too."""

    def __init__(self, shape: tuple[int, ...], spacing: tuple[float, float, float] | None, intensity: str):
        self.shape, self.spacing, self.intensity = shape, spacing, intensity

    def __call__(self, path: Path) -> Tensor:
        voxels = normalise_intensity(read_study(path, self.spacing).voxels.float(), self.intensity)
        fill = 0.0 if self.intensity in ("mr", "none") else float(voxels.min())
        return crop_or_pad(voxels, self.shape, fill).unsqueeze(0).contiguous()


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
