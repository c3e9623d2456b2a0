"""Dynamic time warping distances with aeon, in a child process.

aeon's pairwise DTW is a parallel numba function; once its thread pool has started in a process, PyTorch's
work in that process ran many times slower (SoftCLT's training steps; an evaluation that
encodes the next run after a DTW baseline). `pairwise_dtw` therefore runs aeon in `dtw_worker.py`, a script
of its own, and reads the matrix back.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


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
