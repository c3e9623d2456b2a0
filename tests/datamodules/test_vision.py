import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastlab.datamodules import vision
from contrastlab.errors import ConfigError, DataError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_idx_set(root: Path, n_train=120, n_test=30, compress=True, size=28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays["train"], arrays["t10k"]


def test_digits_splits_are_disjoint_stratified_uint8():
    dm = vision.Digits()
    splits = {name: dm.split(name) for name in ("train", "val", "test")}
    assert [len(s) for s in splits.values()] == [1257, 180, 360]
    sample = splits["train"][0]
    assert sample["x"].dtype == torch.uint8 and sample["x"].shape == (1, 8, 8) and 0 <= sample["y"] < 10
    from sklearn.datasets import load_digits

    # together the three splits are the whole set, each image exactly once
    everything = sorted(bytes(x.numpy()) for s in splits.values() for x in s.x)
    original = np.round(load_digits().images * (255 / 16)).astype(np.uint8)
    assert everything == sorted(bytes(x) for x in original)
    assert torch.bincount(splits["test"].y).min() >= 34  # stratified: every class ~36 times
    assert dm.info.shape == (1, 8, 8) and dm.info.num_classes == 10 and dm.info.channels == 1


def test_loaders_yield_raw_batches_and_named_evaluation_loaders():
    dm = vision.Digits(batch_size=64, eval_batch_size=100)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (64, 1, 8, 8) and batch["x"].dtype == torch.uint8
    assert set(batch) == {"x", "y", "idx"}
    loaders = dm.val_dataloader()
    assert list(loaders) == ["bank", "query"]
    assert len(loaders["bank"].dataset) == 1257 and len(loaders["query"].dataset) == 180
    test = dm.eval_loader("test")
    assert len(test.dataset) == 360 and torch.equal(next(iter(test))["idx"], torch.arange(100))  # in order


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_written_by_the_test(tmp_path, compress):
    (train_x, train_y), (test_x, test_y) = make_idx_set(tmp_path, compress=compress)
    dm = vision.MNIST(root=str(tmp_path), val_size=20)
    train, val, test = dm.split("train"), dm.split("val"), dm.split("test")
    assert (len(train), len(val), len(test)) == (100, 20, 30)
    assert torch.equal(test.x[:, 0], torch.from_numpy(test_x)) and torch.equal(test.y, torch.from_numpy(test_y).long())
    together = torch.cat([train.x, val.x])[:, 0]
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, train_x))


def test_max_train_samples_takes_a_subset(tmp_path):
    make_idx_set(tmp_path)
    assert len(vision.FashionMNIST(root=str(tmp_path), val_size=20, max_train_samples=50).split("train")) == 50


def test_missing_idx_folder_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"data.root: .*train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        vision.FashionMNIST(root=str(tmp_path / "nowhere"))


def test_truncated_idx_file_is_named(tmp_path):
    make_idx_set(tmp_path, compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated"):
        vision.MNIST(root=str(tmp_path), val_size=20).split("test")


def test_batch_larger_than_data_is_a_config_error(tmp_path):
    make_idx_set(tmp_path)
    dm = vision.MNIST(root=str(tmp_path), val_size=20, batch_size=500)
    with pytest.raises(ConfigError, match="data.batch_size=500"):
        dm.train_dataloader()


@pytest.mark.parametrize("cls", [vision.CIFAR10, vision.CIFAR100, vision.STL10])
def test_torchvision_sets_without_files_do_not_download(tmp_path, cls):
    with pytest.raises(DataError, match=r"data.root: .* not found under .*data.download: true"):
        cls(root=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_cifar_arrays_from_torchvision_files(tmp_path, monkeypatch):
    import pickle

    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 20) for i in range(1, 6)), ("test_batch", 30)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    # torchvision checks the official files' digests, which files written here cannot match
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    dm = vision.CIFAR10(root=str(tmp_path), val_size=10)
    train, test = dm.split("train"), dm.split("test")
    assert len(train) == 90 and len(test) == 30 and train.x.shape[1:] == (3, 32, 32) and train.x.dtype == torch.uint8


def write_pngs(folder: Path, n: int, colour=(255, 0, 0)):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (40 + i, 30), colour).save(folder / f"{i}.png")


def test_image_folder_labelled(tmp_path):
    write_pngs(tmp_path / "cat", 10, (255, 0, 0))
    write_pngs(tmp_path / "dog", 10, (0, 0, 255))
    dm = vision.ImageFolder(root=str(tmp_path), size=16, val_fraction=0.2, test_fraction=0.2)
    assert dm.info.num_classes == 2
    train = dm.split("train")
    assert len(train) == 12 and len(dm.split("val")) == 4 and len(dm.split("test")) == 4
    sample = train[0]
    assert sample["x"].shape == (3, 16, 16) and sample["x"].dtype == torch.uint8
    red = sample["x"][0].float().mean() > sample["x"][2].float().mean()
    assert red == (sample["y"] == 0)


def test_image_folder_unlabelled_and_grey(tmp_path):
    write_pngs(tmp_path, 10)
    dm = vision.ImageFolder(root=str(tmp_path), size=8, channels=1)
    assert dm.info.num_classes == 0
    sample = dm.split("train")[0]
    assert sample["y"] == -1 and sample["x"].shape == (1, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="data.root: folder"):
        vision.ImageFolder(root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        vision.ImageFolder(root=str(tmp_path / "empty"))
    write_pngs(tmp_path / "broken", 2)
    (tmp_path / "broken" / "bad.png").write_bytes(b"not a png")
    files = vision.ImageFolder(root=str(tmp_path / "broken"), val_fraction=0, test_fraction=0).split("train")
    with pytest.raises(DataError, match="bad.png cannot be decoded"):
        [files[i] for i in range(len(files))]


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian():
    dm = vision.FashionMNIST(max_train_samples=2000)
    assert len(dm.split("train")) == 2000 and len(dm.split("val")) == 5000 and len(dm.split("test")) == 10000
    x = dm.split("test").x
    assert x.shape[1:] == (1, 28, 28)
    assert x.float().mean().item() / 255 == pytest.approx(dm.info.mean[0], abs=0.01)


def test_normal_class_keeps_one_class_in_train_and_the_bank_only():
    dm = vision.Digits(normal_class=3)
    train, val, test = (dm.split(name) for name in ("train", "val", "test"))
    assert set(train.y.tolist()) == {3} and len(train) == int((vision.Digits().split("train").y == 3).sum())
    assert set(val.y.tolist()) == set(test.y.tolist()) == set(range(10))  # evaluation sees every class
    with pytest.raises(ConfigError, match="data.normal_class must be a class of digits, 0 to 9; got 10"):
        vision.Digits(normal_class=10)
