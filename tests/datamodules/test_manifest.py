"""A new DataModule over a CSV manifest is one file: `Tiles`, defined here with the shared data helpers
(manifest.py, splits.py, images.py, badfiles.py), builds, iterates in loader workers and trains. Also the
helpers' rules: the split rule, the split names, the class order and the bad-file policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo
from contrastlab.datamodules.badfiles import BadFiles, check_policy, skip_collate
from contrastlab.datamodules.base import ContrastiveDataModule
from contrastlab.datamodules.images import ImageDecoder
from contrastlab.datamodules.manifest import SPLIT_NAMES, ManifestSamples, class_order, read_manifest
from contrastlab.datamodules.splits import held_out, seeded_split
from contrastlab.errors import ConfigError, DataError


class Tiles(ContrastiveDataModule):
    """Grey images listed in a CSV manifest (path, label, optional split and group), decoded in the workers."""

    def __init__(self, manifest: str, size: int = 8, on_bad_file: str = "stop", val_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.manifest = read_manifest(manifest)
        self.size, self.on_bad_file, self.val_fraction = size, check_policy(on_bad_file), val_fraction

    @property
    def info(self) -> DataInfo:
        classes = self.manifest.classes
        return DataInfo("tiles", "image", (1, self.size, self.size), len(classes), mean=(0.5,), std=(0.25,))

    def load_split(self, split: str) -> ManifestSamples:
        rows = self.manifest.splits(self.seed, self.val_fraction, 0.2)[split]
        bad = BadFiles(self.on_bad_file, "image", len(rows))
        return ManifestSamples(self.manifest, rows, ImageDecoder(self.size, 1), bad)

    def collate(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        return skip_collate(samples)


def write_tiles(folder: Path, n: int = 40, split: bool = False) -> Path:
    """n 8x8 PNG tiles, dark (label 10) or bright (label 2), of 8 sessions; the manifest lists them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,group" + (",split" if split else "")]
    rng = np.random.default_rng(0)
    for i in range(n):
        label = 10 if i % 2 else 2
        pixels = rng.integers(0, 100, (8, 8)) + (0 if label == 10 else 150)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{label},s{i % 8}" + (f",{'Validation' if i < 4 else 'train'}" if split else ""))
    (folder / "tiles.csv").write_text("\n".join(rows) + "\n")
    return folder / "tiles.csv"


def test_a_manifest_datamodule_defined_in_one_file_builds_iterates_and_trains(tmp_path):
    from contrastlab.modules import SimCLR

    data = Tiles(str(write_tiles(tmp_path)), batch_size=8)
    assert data.manifest.classes == ["2", "10"] and data.info.num_classes == 2  # numbers by value
    sizes = {s: len(data.split(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 20, "val": 10, "test": 10}  # by session, 8 groups of 5: round(1.6) = 2 each
    groups = {s: {data.split(s)[i]["group"] for i in range(sizes[s])} for s in sizes}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    batch = next(iter(data.train_dataloader()))
    assert batch["x"].shape == (8, 1, 8, 8) and batch["x"].dtype == torch.uint8
    L.seed_everything(0)
    model = SimCLR(backbone="small_cnn", data_info=data.info, augment=ImageViews(size=8), proj_hidden_dim=16)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, data)
    assert "val/knn_top1" in trainer.callback_metrics


def test_bad_files_stop_naming_the_file_or_are_skipped_and_counted_in_worker_processes(tmp_path):
    manifest = write_tiles(tmp_path, n=24, split=True)
    (tmp_path / "5.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"5\.png cannot be decoded as an image .*on_bad_file: skip"):
        train = Tiles(str(manifest)).split("train")
        [train[i] for i in range(len(train))]
    data = Tiles(str(manifest), on_bad_file="skip", batch_size=4, eval_batch_size=4, num_workers=2)
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [20, 4, 0]  # "Validation" rows are val
    (tmp_path / "7.png").write_bytes(b"broken after listing")
    seen = sum(len(b["idx"]) for b in data.eval_loader("train"))  # decoded in two worker processes
    assert seen == 18 and data.skipped_count() == 2
    with pytest.raises(ConfigError, match="data.on_bad_file must be one of skip, stop"):
        Tiles(str(manifest), on_bad_file="ignore")


def test_one_split_rule_one_set_of_split_names_one_class_order():
    assert [held_out(n, 0.1) for n in (1, 2, 5, 15, 25, 546)] == [0, 1, 1, 2, 2, 55]  # round, >= 1, < n
    assert held_out(100, 30) == 30  # a count is taken as given
    split = seeded_split(10, val=0.2, test=0.2, seed=3)
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(10))
    assert split["test"].tolist() == seeded_split(10, val=0.4, test=0.2, seed=3)["test"].tolist()  # test first
    for seed in range(5):  # four units: a, b and the two ungrouped samples; round(2.0) = 2 held out
        by_group = seeded_split(6, test=0.5, seed=seed, groups=["a", "a", "b", "b", None, ""])
        where = {i: s for s, chosen in by_group.items() for i in chosen.tolist()}
        assert where[0] == where[1] and where[2] == where[3] and len(by_group["test"]) in (2, 3, 4)
    stratified = seeded_split(20, val=0.25, stratify=[0] * 12 + [1] * 8)
    assert np.bincount(np.array([0] * 12 + [1] * 8)[stratified["val"]]).tolist() == [3, 2]
    assert {SPLIT_NAMES[k] for k in ("valid", "validate", "validation", "val")} == {"val"}
    assert class_order(["b", "10", "2", "", "a", "2.5"]) == ["2", "2.5", "10", "a", "b"]
