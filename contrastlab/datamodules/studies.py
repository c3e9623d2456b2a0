"""Reading medical studies: DICOM series and NIfTI volumes to (D, H, W) voxels, intensities on a common scale,
and a fixed shape (moved out of datamodules/medical.py, which reads them through `StudyReader`).

pydicom decodes slices and we sort them by their position along the slice normal and apply each slice's
rescale slope and intercept; nibabel reorients a NIfTI image to its closest canonical (RAS+) axes and
resamples it to a target spacing (`nibabel.processing`, scipy underneath). Intensities are then put on a
common scale (a CT window preset, MR z-scores over the foreground, or min-max): the data's by the contract's
rule (contrastlab/contract.py), and the volume is centre-cropped or padded to a fixed shape. Any file pydicom or
nibabel cannot use is reported by its path as one error line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.errors import ConfigError, DataError

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
