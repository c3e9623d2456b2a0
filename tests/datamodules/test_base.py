"""The base DataModule's contract, for any modality: DataInfo, the collate hook, one-class training, eval loaders."""

import io

import pytest
import torch
from torch.utils.data import Dataset

from contrastlab.contract import DataInfo
from contrastlab.datamodules.base import ContrastiveDataModule, pad_collate
from contrastlab.errors import ConfigError


class Series(Dataset):
    """Variable-length (C, T_i) series with labels in a list, as a file-backed dataset keeps them."""

    def __init__(self, n: int):
        self.labels = [i % 3 for i in range(n)]
        self.lengths = [5 + i % 4 for i in range(n)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"x": torch.full((2, self.lengths[i]), float(i + 1)), "y": self.labels[i], "idx": i}


class VariableSeries(ContrastiveDataModule):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @property
    def info(self) -> DataInfo:
        return DataInfo("var", "series", (2, 0), 3, sample_rate=100.0)

    def load_split(self, split):
        return Series(12)

    def collate(self, samples):
        return pad_collate(samples)


def test_pad_collate_pads_to_the_longest_with_mask_and_lengths():
    batch = pad_collate([Series(4)[i] for i in range(4)])
    assert batch["x"].shape == (4, 2, 8) and batch["lengths"].tolist() == [5, 6, 7, 8]
    assert batch["mask"].sum(dim=1).tolist() == [5, 6, 7, 8] and batch["mask"].dtype == torch.bool
    assert (batch["x"][0, :, 5:] == 0).all() and (batch["x"][0, :, :5] == 1).all()
    assert batch["y"].tolist() == [0, 1, 2, 0] and batch["idx"].tolist() == [0, 1, 2, 3]


def test_the_collate_hook_batches_every_loader():
    dm = VariableSeries(batch_size=4, eval_batch_size=5)
    train = next(iter(dm.train_dataloader()))
    assert {"mask", "lengths"} <= set(train) and train["x"].shape[0] == 4
    loaders = dm.val_dataloader()
    assert list(loaders) == ["bank", "query"]
    first = next(iter(dm.eval_loader("test")))
    assert first["idx"].tolist() == [0, 1, 2, 3, 4] and first["x"].shape == (5, 2, 8)


def test_one_class_training_keeps_the_normal_class_in_train_and_the_bank_of_any_dataset():
    dm = VariableSeries(normal_class=2)
    train, val = dm.split("train"), dm.split("val")
    assert [train[i]["y"] for i in range(len(train))] == [2, 2, 2, 2]
    assert len(val) == 12  # evaluation sees every class
    with pytest.raises(ConfigError, match="data.normal_class must be a class of var, 0 to 2; got 3"):
        VariableSeries(normal_class=3).split("train")
    with pytest.raises(ConfigError, match="needs single-label data"):
        VariableSeries(normal_class=0).check_normal_class(5, multilabel=True)


def test_data_info_loads_with_weights_only_and_upgrades_old_checkpoints(monkeypatch):
    info = DataInfo("toy", "series", (1, 64), 2, mean=(0.0,), std=(1.0,), sample_rate=16000.0, extra={"bands": 64})
    buffer = io.BytesIO()
    torch.save({"data_info": info}, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["data_info"] == info
    assert info.channels == 1 and info.sample_dims == 1

    # a checkpoint written before `shape`: the pickled state holds channels and size of square images
    state = {"name": "digits", "modality": "image", "channels": 1, "num_classes": 10, "size": 8,
             "mean": (0.3,), "std": (0.37,)}  # fmt: skip
    buffer = io.BytesIO()
    with monkeypatch.context() as patch:
        patch.setattr(DataInfo, "__getstate__", lambda self: state, raising=False)
        torch.save({"data_info": info}, buffer)
    buffer.seek(0)
    old = torch.load(buffer, weights_only=True)["data_info"]
    assert old.shape == (1, 8, 8) and old.views.endswith("ImageViews") and old.extra == {} and not old.multilabel
