"""Dynamic time warping distances with aeon, in a child process, and a training set's DTW matrix cached on disk.

aeon's pairwise DTW is a parallel numba function; once its thread pool has started in a process, PyTorch's
work in that process ran many times slower (SoftCLT's training steps; an evaluation that
encodes the next run after a DTW baseline). `pairwise_dtw` therefore runs aeon in `dtw_worker.py`, a script
of its own, and reads the matrix back.

SoftCLT's soft instance targets come from a training set's DTW distances (`cached_dtw`). The full matrix of a UCR
training set takes seconds with aeon's numba DTW (a Python loop over tslearn's `dtw`, as the reference code does,
~10x longer), so it is computed once per dataset and kept in `<cache_dir>/dtw-<digest>.npy`, the digest being a
hash of the series themselves (and of how they are prepared): another dataset, a changed file, another crop or
subset gets its own matrix, and a rerun or a resumed run reads it back.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from contrastlab.errors import ConfigError

PREPARATION = "minmax-per-series-channel/v1"  # part of the cache key: change it when `prepare` changes


def pairwise_dtw(
    series: list[np.ndarray], others: list[np.ndarray] | None = None, window: float | None = None
) -> np.ndarray:
    """(N, N) DTW distances of `series` (aeon's: dependent multivariate DTW, full window, the sum of squared
    step distances), or (N, M) from each series to each of `others`; unequal lengths as they are. `window`:
    a Sakoe-Chiba band as a fraction of the length (None: no band).

    Computed in a child process (`dtw_worker.py`): aeon's parallel numba pool, once started in a process,
    slows PyTorch's training there about 40x on a small CPU.
    """
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "series.npz", Path(folder) / "dtw.npy"
        arrays = {f"x{i}": x for i, x in enumerate(series)} | {"n": np.array(len(series))}
        if others is not None:
            arrays |= {f"y{i}": y for i, y in enumerate(others)} | {"m": np.array(len(others))}
        if window is not None:
            arrays["window"] = np.array(window)
        np.savez(source, **arrays)
        worker = Path(__file__).with_name("dtw_worker.py")
        proc = subprocess.run([sys.executable, str(worker), str(source), str(target)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the DTW worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return np.load(target, allow_pickle=False)


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "contrastlab" / "dtw"


def series_of(dataset: Dataset) -> list[np.ndarray]:
    """Each sample's series (C, T_i) as float64, trimmed to its valid steps when the sample carries a
    `mask` or `length`; NaNs (missing values) stay, `prepare` fills them."""
    out = []
    for i in range(len(dataset)):
        sample = dataset[i]
        x = torch.as_tensor(sample["x"]).to(torch.float64)
        if "mask" in sample:
            x = x[..., torch.as_tensor(sample["mask"]).bool()]
        elif "length" in sample:
            x = x[..., : int(sample["length"])]
        out.append(x.numpy())
    return out


def prepare(series: np.ndarray) -> np.ndarray:
    """SoftCLT's preparation: each channel min-max scaled to [0, 1]; missing values (NaN) then 0."""
    low = np.nanmin(series, axis=-1, keepdims=True)
    high = np.nanmax(series, axis=-1, keepdims=True)
    return np.nan_to_num((series - low) / (high - low + 1e-6), nan=0.0)


def content_key(series: list[np.ndarray]) -> str:
    digest = hashlib.sha256(PREPARATION.encode())
    for x in series:
        digest.update(str(x.shape).encode())
        digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()[:24]


def dtw_matrix(series: list[np.ndarray]) -> np.ndarray:
    """SoftCLT's DTW matrix: the pairwise DTW of the series, each channel min-max scaled first."""
    return pairwise_dtw([prepare(x) for x in series])


def cached_dtw(series: list[np.ndarray], cache_dir: str | Path | None = None) -> tuple[np.ndarray, Path, bool]:
    """The DTW matrix of `series`, from the cache when there; returns (matrix, its file, read from cache)."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / f"dtw-{content_key(series)}.npy"
    if path.is_file():
        matrix = np.load(path, allow_pickle=False)
        if matrix.shape == (len(series), len(series)):
            return matrix, path, True
    matrix = dtw_matrix(series)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            np.save(f, matrix, allow_pickle=False)
        partial.replace(path)  # atomic: a concurrent reader sees the whole file or none
    except OSError as err:
        raise ConfigError(
            f"model.init_args.dtw_cache_dir: cannot write the DTW cache {path} ({err}); point it at a writable folder"
        ) from err
    return matrix, path, False
