"""Medical test data the tests write: MedMNIST-format .npz files, NIfTI studies and DICOM series.

The images carry their class so that a few steps of training can find it: a bright blob whose position
(2-D) or size (3-D) is the class, over noise.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np

from contrastlab.datamodules.medical import save_medmnist

SPLITS = {"train": 64, "val": 24, "test": 32}


def blobs_2d(n: int, size: int, seed: int, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) uint8 images: a bright square in the left half (class 0) or the right half (class 1)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, (n, size, size)).astype(np.float32)
    side = size // 3
    for i, label in enumerate(y):
        top = rng.integers(0, size - side)
        left = rng.integers(0, size // 2 - side + 1) + (size // 2) * label
        x[i, top : top + side, left : left + side] += 180
    return x.clip(0, 255).astype(np.uint8), y


def blobs_3d(n: int, size: int, seed: int, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, size) uint8 volumes: a bright cube, small (class 0) or large (class 1), anywhere."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, (n, size, size, size)).astype(np.float32)
    for i, label in enumerate(y):
        side = size // 4 if label == 0 else size // 2
        d, h, w = rng.integers(0, size - side + 1, 3)
        x[i, d : d + side, h : h + side, w : w + side] += 180
    return x.clip(0, 255).astype(np.uint8), y


def write_medmnist(path: Path, dims: int = 2, size: int = 28, label_shape: str = "column", multilabel: int = 0) -> Path:
    """A MedMNIST-format file: labels (N, 1) (`column`, as the official files) or (N,) (`flat`), or a
    multi-hot (N, multilabel) set whose first label is the class of the blob and the others random."""
    splits = {}
    for seed, (split, n) in enumerate(SPLITS.items()):
        x, y = (blobs_2d if dims == 2 else blobs_3d)(n, size, seed)
        if multilabel:
            rng = np.random.default_rng(seed + 10)
            labels = rng.integers(0, 2, (n, multilabel))
            labels[:, 0] = y
            labels[: multilabel * 2 : 2, 1:] = 1  # every label both present and absent in each split
        else:
            labels = y[:, None] if label_shape == "column" else y
        splits[split] = (x, labels.astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_medmnist(path, splits)
    return path


def pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def nibabel_file(name: str) -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data" / name


def write_ct_series(folder: Path, slices: int = 4, spacing: float = 5.0) -> Path:
    """CT_small.dcm as a series of `slices`: slice k at z = k * spacing holds the pixels + 100 k, written in a
    shuffled file order with shuffled instance numbers, so only the position sorts them."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    source = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    for k, name in zip(range(slices), [3, 0, 2, 1, 5, 4, 7, 6][:slices]):
        ds = copy.deepcopy(source)
        pixels = source.pixel_array.astype(np.int16) + 100 * k
        ds.PixelData = pixels.tobytes()
        x, y, _ = (float(v) for v in source.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, k * spacing]
        ds.InstanceNumber = (k * 7) % slices
        ds.SOPInstanceUID = f"{source.SOPInstanceUID}.{k}"
        ds.save_as(folder / f"slice{name}.dcm")
    return folder


def copy_file(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target
