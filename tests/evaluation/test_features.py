"""Feature extraction and its cache, fine-tuning on a labelled subset, and the t-SNE picture."""

import math
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from contrastlab.datamodules.base import TensorSamples
from contrastlab.evaluation.features import FeatureCache, RawEncoder, extract_features, split_loader
from contrastlab.evaluation.finetune import finetune, subset_loader
from contrastlab.evaluation.plots import tsne_png
from contrastlab.evaluation.protocols import stratified_subset


class TinyEncoder(nn.Module):
    """What evaluation asks of a model: `embed(batch)` from the raw `x`, here uint8 -> float -> linear."""

    def __init__(self, dim_in: int = 4, dim_out: int = 6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_out), nn.BatchNorm1d(dim_out))
        self.feature_dim = dim_out

    def embed(self, batch):
        return self.net(batch["x"].float() / 255)


def toy_samples(n: int = 80, seed: int = 0) -> TensorSamples:
    """Two classes of uint8 'samples' that differ in their first coordinate."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randint(0, 100, (n, 4), generator=g, dtype=torch.uint8)
    x[:, 0] = torch.where(y == 1, 200, 20).to(torch.uint8)
    return TensorSamples(x, y)


def test_extract_features_keeps_loader_order_and_equals_embed():
    model = TinyEncoder().eval()
    data = toy_samples(30)
    out = extract_features(model, DataLoader(data, batch_size=8), "cpu")
    assert torch.equal(out["idx"], torch.arange(30)) and torch.equal(out["y"], data.y)
    with torch.no_grad():
        assert torch.allclose(out["features"], model.embed({"x": data.x}))
    assert RawEncoder(model)(data.x[:5]).shape == (5, 6)


def test_cache_reuses_features_until_the_checkpoint_changes(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"weights")
    calls = []

    def extract():
        calls.append(1)
        return {"features": torch.randn(3, 2), "y": torch.tensor([0, 1, 0]), "idx": torch.arange(3)}

    first = FeatureCache(tmp_path / "cache", ckpt).get("train", extract)
    again = FeatureCache(tmp_path / "cache", ckpt)
    second = again.get("train", extract)
    assert len(calls) == 1 and again.hits == ["train"] and again.extracted == []
    assert torch.equal(first["features"], second["features"])
    again.get("test", extract)  # another split, another file
    assert len(calls) == 2
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the run trained on: new weights
    FeatureCache(tmp_path / "cache", ckpt).get("train", extract)
    assert len(calls) == 3
    assert len(list((tmp_path / "cache").glob("features-train-*.pt"))) == 2


def test_a_damaged_cache_file_is_extracted_again(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"weights")
    cache = FeatureCache(tmp_path, ckpt)
    cache.path("val").write_bytes(b"not a tensor file")
    out = cache.get("val", lambda: {"features": torch.ones(1, 1), "y": torch.zeros(1), "idx": torch.zeros(1)})
    assert cache.extracted == ["val"] and out["features"].item() == 1.0


def test_finetune_learns_from_the_labelled_subset_and_leaves_the_model_alone():
    model = TinyEncoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, test = toy_samples(200), toy_samples(60, seed=1)
    indices = stratified_subset(train.y, 0.5, seed=0)
    loader = subset_loader(DataLoader(train, batch_size=64), indices, batch_size=16, seed=0)
    assert sum(len(b["y"]) for b in loader) == 100
    out = finetune(model, loader, DataLoader(test, batch_size=32), 6, 2, epochs=3, lr=0.05)
    assert out["top1"] > 0.9 and out["auroc"] > 0.9  # AUROC of the positive class: binary labels
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = finetune(model, loader, DataLoader(test, batch_size=32), 6, 2, epochs=3, lr=0.05)
    assert again == out  # seeded


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_finetune_decays_its_rate_to_zero_on_a_cosine_or_holds_it(monkeypatch, schedule):
    rates = []
    step = torch.optim.AdamW.step

    def recorded(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recorded)
    loader = DataLoader(toy_samples(64), batch_size=16)  # 4 steps an epoch
    finetune(TinyEncoder(), loader, DataLoader(toy_samples(20, seed=1)), 6, 2, epochs=2, lr=0.1, schedule=schedule)
    assert len(rates) == 8 and rates[0] == pytest.approx(0.1)
    if schedule == "constant":
        assert rates == [pytest.approx(0.1)] * 8
    else:  # 0.1 * (1 + cos(pi * i / 8)) / 2 at step i: down to 0.004 at the last step, 0 after it
        assert rates == pytest.approx([0.05 * (1 + math.cos(math.pi * i / 8)) for i in range(8)])


def test_finetune_reports_val_beside_test_given_a_val_loader():
    train, test, val = toy_samples(100), toy_samples(40, seed=1), toy_samples(30, seed=2)
    loader = DataLoader(train, batch_size=16)
    both = finetune(TinyEncoder(), loader, DataLoader(test), 6, 2, epochs=2, lr=0.05, val_loader=DataLoader(val))
    alone = finetune(TinyEncoder(), loader, DataLoader(test), 6, 2, epochs=2, lr=0.05)
    assert set(both) == {"top1", "auroc", "val_top1", "val_auroc"}
    assert {k: both[k] for k in alone} == alone  # val is read after training: test's figures do not move
    on_val = finetune(TinyEncoder(), loader, DataLoader(val), 6, 2, epochs=2, lr=0.05)
    assert (both["val_top1"], both["val_auroc"]) == (on_val["top1"], on_val["auroc"])


def test_split_loader_is_none_for_a_missing_or_empty_split():
    loaders = {"train": DataLoader(toy_samples(4)), "test": DataLoader(toy_samples(0))}
    assert split_loader(loaders.__getitem__, "train") is loaders["train"]
    assert split_loader(loaders.__getitem__, "val") is None  # KeyError: no such split
    assert split_loader(loaders.__getitem__, "test") is None  # empty


def test_finetune_refuses_an_unknown_schedule():
    with pytest.raises(ValueError, match="'linear': expected one of cosine, constant"):
        finetune(TinyEncoder(), DataLoader(toy_samples(8)), DataLoader(toy_samples(8)), 6, 2, schedule="linear")


def test_subset_loader_never_leaves_a_batch_of_one():
    loader = subset_loader(DataLoader(toy_samples(40)), torch.arange(17), batch_size=8, seed=0)
    assert min(len(b["y"]) for b in loader) > 1


def test_tsne_png_writes_a_picture(tmp_path):
    features = torch.cat([torch.randn(30, 5), torch.randn(30, 5) + 4])
    labels = torch.tensor([0] * 30 + [1] * 29 + [-1])
    path = tsne_png(features, labels, tmp_path / "t.png", max_points=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("labels", [torch.randint(0, 2, (40, 3)), torch.full((40,), -1)], ids=["multilabel", "none"])
def test_tsne_png_takes_multilabel_and_unlabelled_data(tmp_path, labels):
    assert tsne_png(torch.randn(40, 4), labels, tmp_path / "t.png").is_file()
