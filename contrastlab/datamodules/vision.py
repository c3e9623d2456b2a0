"""Image DataModules: digits, MNIST/Fashion-MNIST from IDX files, CIFAR-10/100, STL-10, any image folder.

Every dataset yields uint8 (C, H, W) tensors at a fixed size; augmentation happens later, on the device,
by the pipeline the data proposes (`ImageViews`: SimCLR's recipe at the data's size) or a config's own.
Nothing downloads unless `download: true` is set; a missing file is an error saying what to put where.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from contrastlab.contract import DataInfo
from contrastlab.datamodules.badfiles import BadFiles, check_policy, skip_collate
from contrastlab.datamodules.base import ContrastiveDataModule, TensorSamples
from contrastlab.datamodules.images import IMAGE_EXTENSIONS, ImageDecoder
from contrastlab.datamodules.splits import hold_out, seeded_split, stratified_counts
from contrastlab.errors import ConfigError, DataError

IMAGE_VIEWS = "contrastlab.augment.vision.ImageViews"


def image_info(name: str, channels: int, size: int, num_classes: int, mean, std) -> DataInfo:
    """The DataInfo of square images, proposing SimCLR's image recipe as the default views."""
    shape = (channels, size, size)
    return DataInfo(name, "image", shape, num_classes, mean=tuple(mean), std=tuple(std), views=IMAGE_VIEWS)


class InMemoryVision(ContrastiveDataModule):
    """Image sets small enough to hold as one uint8 tensor; the validation split is held out of train.

    Args:
        val_size: training samples held out for validation (seeded by `seed`).
        max_train_samples: keep only this many training samples (a seeded subset), for quick runs.
        normal_class: (see ContrastiveDataModule) applied after `max_train_samples`.
    """

    name = "images"
    channels = 1
    num_classes = 10
    size = 28
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __init__(self, val_size: int = 5000, max_train_samples: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.check_normal_class(self.num_classes)  # before any run starts, not at setup
        self.val_size = val_size
        self.max_train_samples = max_train_samples
        self._train_arrays: tuple[Tensor, Tensor] | None = None

    @property
    def info(self) -> DataInfo:
        return image_info(self.name, self.channels, self.size, self.num_classes, self.mean, self.std)

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        """(images uint8 (N, C, H, W), labels int64 (N,)) of the official train or test set."""
        raise NotImplementedError

    def load_split(self, split: str) -> Dataset:
        if split == "test":
            return TensorSamples(*self.load_arrays(train=False))
        if self._train_arrays is None:  # read once for both train and val
            self._train_arrays = self.load_arrays(train=True)
        x, y = self._train_arrays
        if not 0 < self.val_size < len(x):
            raise ConfigError(f"data.val_size={self.val_size} must be between 1 and the {len(x)} training samples")
        keep, held = hold_out(len(x), self.val_size, self.seed)
        if split == "val":
            return TensorSamples(x[held], y[held])
        if self.max_train_samples is not None and self.max_train_samples < len(keep):
            keep = np.sort(np.random.default_rng(self.seed + 1).choice(keep, self.max_train_samples, replace=False))
        return TensorSamples(x[keep], y[keep])


class Digits(InMemoryVision):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), shipped inside scikit-learn.

    There is no official split: a seeded stratified split keeps `test_size` for test and `val_size` for
    validation (defaults 360 and 180, i.e. 20% and 10%).
    """

    name = "digits"
    size = 8
    mean = (0.3031,)
    std = (0.3752,)

    def __init__(self, test_size: int = 360, val_size: int = 180, **kwargs):
        super().__init__(val_size=val_size, **kwargs)
        self.test_size = test_size

    def load_split(self, split: str) -> Dataset:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
        y = torch.from_numpy(digits.target).long()
        splits = stratified_counts(y.numpy(), self.val_size, self.test_size, self.seed)
        if self.max_train_samples is not None:
            splits["train"] = splits["train"][: self.max_train_samples]
        chosen = splits[split]
        return TensorSamples(x[np.sort(chosen)], y[np.sort(chosen)])


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            zero, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
            if zero != 0 or dtype_code != 0x08:
                raise DataError(f"{path} is not an unsigned-byte IDX file (magic {zero:#x} {dtype_code:#x})")
            shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except (OSError, EOFError, struct.error) as err:
        raise DataError(f"{path} cannot be read as an IDX file ({err})") from err
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: {data.size} bytes for shape {shape}")
    return data.reshape(shape)


class IDXImages(InMemoryVision):
    """MNIST-format IDX files: `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, optionally `.gz`."""

    source_hint = ""

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        for prefix in ("train", "t10k"):
            for kind in ("images-idx3", "labels-idx1"):
                self._find(f"{prefix}-{kind}-ubyte")

    def _find(self, stem: str) -> Path:
        for candidate in (self.root / stem, self.root / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
        raise DataError(f"data.root: {self.root / stem}[.gz] not found; {self.source_hint}")

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        prefix = "train" if train else "t10k"
        images = read_idx(self._find(f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(self._find(f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise DataError(f"{self.root}: {len(images)} {prefix} images but {len(labels)} labels")
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class FashionMNIST(IDXImages):
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images of 10 clothing classes."""

    name = "fashion_mnist"
    mean = (0.2860,)
    std = (0.3530,)
    source_hint = "on Debian `apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist"

    def __init__(self, root: str = "/usr/share/datasets/fashion-mnist", **kwargs):
        super().__init__(root=root, **kwargs)


class MNIST(IDXImages):
    """MNIST (LeCun et al. 1998): 60k/10k 28x28 grey digits."""

    name = "mnist"
    mean = (0.1307,)
    std = (0.3081,)
    source_hint = "put the four MNIST IDX files from the MNIST site in that folder"

    def __init__(self, root: str = "data/mnist", **kwargs):
        super().__init__(root=root, **kwargs)


class TorchvisionImages(InMemoryVision):
    """A torchvision dataset read once into memory; downloads only with `download: true`."""

    channels = 3
    torchvision_name = ""

    def __init__(self, root: str = "data", download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.download = download
        folder = self.root / self.torchvision_class().base_folder
        if not download and not folder.is_dir():  # fail before a run is created, not at setup
            raise self._missing(f"{folder} does not exist")

    def torchvision_class(self):
        import torchvision.datasets

        return getattr(torchvision.datasets, self.torchvision_name)

    def open_torchvision(self, split: str):
        return self.torchvision_class()(str(self.root), train=split == "train", download=self.download)

    def _missing(self, reason: str) -> DataError:
        return DataError(
            f"data.root: {self.name} not found under {self.root} ({reason}); put the extracted dataset "
            "there, or set data.download: true on a machine with network access"
        )

    def _open(self, split: str):
        try:
            return self.open_torchvision(split)
        except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
            raise self._missing(str(err)) from err


class CIFAR10(TorchvisionImages):
    """CIFAR-10 (Krizhevsky 2009): 50k/10k 32x32 colour images, 10 classes."""

    name = "cifar10"
    size = 32
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    torchvision_name = "CIFAR10"

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        ds = self._open("train" if train else "test")
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)


class CIFAR100(CIFAR10):
    """CIFAR-100 (Krizhevsky 2009): 50k/10k 32x32 colour images, 100 classes."""

    name = "cifar100"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    torchvision_name = "CIFAR100"


class STL10(TorchvisionImages):
    """STL-10 (Coates et al. 2011): 96x96 colour; pre-training uses the 100k unlabelled images too.

    Training reads `train+unlabeled` (unlabelled samples carry y = -1), the kNN bank and validation use
    the labelled train split (5k, `val_size` held out) and test the 8k test split.
    """

    name = "stl10"
    size = 96
    mean = (0.4467, 0.4398, 0.4066)
    std = (0.2603, 0.2566, 0.2713)
    torchvision_name = "STL10"
    bank_split = "labelled_train"  # the kNN bank must hold labels: not train+unlabeled

    def __init__(self, use_unlabeled: bool = True, val_size: int = 500, **kwargs):
        super().__init__(val_size=val_size, **kwargs)
        self.use_unlabeled = use_unlabeled

    def open_torchvision(self, split: str):
        return self.torchvision_class()(str(self.root), split=split, download=self.download)

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        ds = self._open("train" if train else "test")
        return torch.from_numpy(ds.data), torch.from_numpy(ds.labels.astype(np.int64))

    def load_split(self, split: str) -> Dataset:
        labelled = super().load_split("train" if split == self.bank_split else split)
        if split != "train" or not self.use_unlabeled:
            return labelled
        unlabeled = self._open("unlabeled")
        x = torch.cat([labelled.x, torch.from_numpy(unlabeled.data)])
        y = torch.cat([labelled.y, torch.full((len(unlabeled.data),), -1, dtype=torch.long)])
        return TensorSamples(x, y)


class ImageFiles(Dataset):
    """Image files decoded and resized on access (in loader workers): shorter side to `size`, centre crop
    (datamodules/images.py); a file that cannot be decoded stops the run or is skipped (`bad`)."""

    def __init__(self, files: list[Path], labels: list[int], size: int, channels: int, bad: BadFiles | None = None):
        self.files, self.labels, self.size, self.channels = files, labels, size, channels
        self.decode = ImageDecoder(size, channels)
        self.bad_files = bad or BadFiles("stop", "image", len(files))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Tensor | int] | None:
        x = self.bad_files.read(i, self.files[i], self.decode)
        return None if x is None else {"x": x, "y": self.labels[i], "idx": i}


class ImageFolder(ContrastiveDataModule):
    """Any folder of images, labelled or not.

    Layouts: `root/<class>/<image>` (labelled, classes sorted by name), or images directly in `root`
    (unlabelled, y = -1), or either of these under `root/train`, `root/val`, `root/test`. Without split
    folders a seeded split holds out `val_fraction` and `test_fraction` of the images (datamodules/splits.py).

    Args:
        root: the folder.
        size: images are resized (shorter side) and centre-cropped to size x size.
        channels: 3 for RGB, 1 for grey.
        mean, std: per-channel normalisation (ImageNet's by default).
        on_bad_file: `stop` (the default: end the run naming the file) or `skip` (drop it from its batch, count
            it), for an image that cannot be decoded.
    """

    def __init__(
        self,
        root: str,
        size: int = 64,
        channels: int = 3,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        on_bad_file: str = "stop",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.on_bad_file = check_policy(on_bad_file)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data.root: folder {self.root} not found; point it at a folder of images")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
        self.size, self.channels = size, channels
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.mean = tuple(mean) if mean else (0.485, 0.456, 0.406)[:channels] if channels == 3 else (0.449,)
        self.std = tuple(std) if std else (0.229, 0.224, 0.225)[:channels] if channels == 3 else (0.226,)
        self.has_split_folders = (self.root / "train").is_dir()
        self.classes = self._classes(self.root / "train" if self.has_split_folders else self.root)
        if not self._scan(self.root / "train" if self.has_split_folders else self.root)[0]:
            raise DataError(f"data.root: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {self.root}")

    @staticmethod
    def _classes(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def _scan(self, folder: Path) -> tuple[list[Path], list[int]]:
        if not self.classes:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            return files, [-1] * len(files)
        files, labels = [], []
        for label, name in enumerate(self.classes):
            found = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            files += found
            labels += [label] * len(found)
        return files, labels

    @property
    def info(self) -> DataInfo:
        return image_info(self.root.name, self.channels, self.size, len(self.classes), self.mean, self.std)

    def load_split(self, split: str) -> Dataset:
        if self.has_split_folders:
            folder = self.root / split
            if not folder.is_dir():
                raise DataError(f"data.root: {folder} not found; with a train/ folder, val/ and test/ are needed too")
            files, labels = self._scan(folder)
        else:
            files, labels = self._scan(self.root)
            picked = seeded_split(len(files), self.val_fraction, self.test_fraction, self.seed)[split]
            files, labels = [files[i] for i in picked], [labels[i] for i in picked]
        return ImageFiles(files, labels, self.size, self.channels, BadFiles(self.on_bad_file, "image", len(files)))

    def collate(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        return skip_collate(samples)
