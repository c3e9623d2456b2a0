"""DTW matrices with aeon in a process of their own: `python dtw_worker.py IN.npz OUT.npy` (run as a script,
so it imports numpy and aeon, not the package).

aeon's pairwise DTW is a parallel numba function; once its thread pool has started in a process, PyTorch's
training steps in that process ran many times slower (SoftCLT on GunPoint: right after computing the matrix
in-process, against reading it from the cache). Computing it here
leaves the training process untouched.

IN.npz holds `n` and series `x0 .. x{n-1}` ((C, T_i) float64), optionally `m` and `y0 .. y{m-1}`, and
optionally `window` (a Sakoe-Chiba band as a fraction of the length); OUT.npy gets the (n, n) matrix, or
(n, m) distances from each x to each y.
"""

import sys

import numpy as np


def collection(series: list[np.ndarray], equal: bool):
    return np.stack(series) if equal else series


def main(source: str, target: str) -> None:
    from aeon.distances import dtw_pairwise_distance

    with np.load(source, allow_pickle=False) as data:
        x = [data[f"x{i}"] for i in range(int(data["n"]))]
        y = [data[f"y{i}"] for i in range(int(data["m"]))] if "m" in data else None
        window = float(data["window"]) if "window" in data else None
    equal = len({s.shape for s in x + (y or [])}) == 1
    others = None if y is None else collection(y, equal)
    distances = dtw_pairwise_distance(collection(x, equal), others, window=window)
    np.save(target, np.asarray(distances, dtype=np.float64), allow_pickle=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
