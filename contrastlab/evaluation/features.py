"""Frozen features of a split, extracted once per checkpoint and split and cached on disk, and the
encoder that maps raw samples to those features (what `contrastlab eval --register` logs).

The cache file is keyed by the checkpoint's absolute path, modification time and size and the split:
a checkpoint rewritten in place (a run that trained on) gets new features, an unchanged one reuses them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader

Features = dict[str, Tensor]  # {"features": (N, D) float, "y": (N,) or (N, L), "idx": (N,)}


def split_loader(eval_loader: Callable[[str], DataLoader], split: str) -> DataLoader | None:
    """`eval_loader(split)` (a DataModule's), or None where the data has no such split or it is empty."""
    try:
        loader = eval_loader(split)
    except (KeyError, ValueError, NotImplementedError):
        return None
    return loader if loader is not None and len(loader.dataset) > 0 else None


SPACES = ("backbone", "projector")  # where features are read: the representation, or the loss's space after it


@torch.no_grad()
def extract_features(
    model: nn.Module, loader: DataLoader, device: torch.device | str, space: str = "backbone"
) -> Features:
    """`model.embed(batch)` over a loader, in its order, with the labels and sample indices beside; with `space`
    "projector", `model.project` of them."""
    if space not in SPACES:
        raise ValueError(f"feature space {space!r}: expected one of {SPACES}")
    was_training = model.training
    model.eval()
    feats, ys, idxs = [], [], []
    try:
        for batch in loader:
            batch = move_data_to_device(batch, device)
            features = model.embed(batch)
            feats.append((model.project(features) if space == "projector" else features).float().cpu())
            ys.append(batch["y"].cpu())
            idxs.append(torch.as_tensor(batch["idx"]).cpu())
    finally:
        model.train(was_training)
    return {"features": torch.cat(feats), "y": torch.cat(ys), "idx": torch.cat(idxs)}


def cache_key(ckpt_path: Path, split: str) -> str:
    stat = ckpt_path.stat()
    text = f"{ckpt_path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{split}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Features of one checkpoint, one file per split: `<folder>/features-<split>-<key>.pt`."""

    def __init__(self, folder: Path, ckpt_path: Path):
        self.folder, self.ckpt_path = Path(folder), Path(ckpt_path)
        self.hits: list[str] = []
        self.extracted: list[str] = []

    def path(self, split: str) -> Path:
        return self.folder / f"features-{split}-{cache_key(self.ckpt_path, split)}.pt"

    def get(self, split: str, extract: Callable[[], Features]) -> Features:
        """The cached features of `split`, or `extract()` saved first."""
        path = self.path(split)
        if path.is_file():
            try:
                features = torch.load(path, map_location="cpu", weights_only=True)
                self.hits.append(split)
                return features
            except Exception:  # a truncated or foreign file: extract again and overwrite it
                pass
        features = extract()
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(features, partial)
        os.replace(partial, path)  # another eval reading the cache never sees half a file
        self.extracted.append(split)
        return features


class RawEncoder(nn.Module):
    """Raw samples (the dataset's `x`, uint8 images for vision) -> features, through the model's
    deterministic evaluation view, normalisation and backbone (`model.embed`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        device = next(self.model.parameters()).device
        return self.model.embed({"x": torch.as_tensor(x).to(device)})
