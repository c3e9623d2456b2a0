"""Reading series files: the UCR/UEA archive's formats (.ts, .tsv, .arff) and arrays (.npy, .npz, .csv), as
(C, T_i) float32 series (NaN where missing) and labels as read; a malformed file is a DataError naming the file
and the line (moved out of datamodules/series.py, whose DataModules read through `read_series_file`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from contrastlab.errors import DataError

FILE_FORMATS = (".ts", ".tsv", ".arff", ".npy", ".npz", ".csv")

Arrays = tuple[list[np.ndarray], np.ndarray | None]  # series (C, T_i) float, labels (N,) as read or None


def _bad_line(path: Path, check) -> str:
    """`file:line` of the first line `check(text)` refuses (returns a reason), else the file alone."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            reason = check(line.rstrip("\n"))
            if reason:
                return f"{path}:{number}: {reason}"
    return f"{path}"


def _number(text: str) -> bool:
    text = text.strip()
    if text in ("?", "", "NaN", "nan"):
        return True
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_ts_line(state: dict):
    def check(line: str) -> str | None:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            return None
        if not state.get("data"):
            if stripped.lower().startswith("@data"):
                state["data"] = True
            return None
        parts = stripped.split(":")
        dims = parts[:-1] if len(parts) > 1 else parts
        if not dims:
            return "no values"
        if state.setdefault("dims", len(dims)) != len(dims):
            return f"{len(dims)} dimensions where earlier lines have {state['dims']}"
        for values in dims:
            bad = [v for v in values.replace("(", "").replace(")", "").split(",") if not _number(v)]
            if bad:
                return f"{bad[0]!r} is not a number"
        return None

    return check


def _check_arff_line(state: dict):
    def check(line: str) -> str | None:
        stripped = line.strip()
        if not stripped or stripped.startswith("%"):
            return None
        if not state.get("data"):
            if stripped.lower().startswith("@data"):
                state["data"] = True
            return None
        values = stripped.strip("'\"").replace("\\n", ",").split(",")[:-1]
        bad = [v for v in values if not _number(v.strip("'\""))]
        return f"{bad[0]!r} is not a number" if bad else None

    return check


def read_delimited(path: Path, delimiter: str, label_column: int | None) -> Arrays:
    """One univariate series per line (the archive's .tsv, or .csv): the label in `label_column` (None: none).
    Shorter series end early or in NaN; every line is checked, so a bad value names its line."""
    series, labels = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter=delimiter), 1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if label_column is not None:
                if label_column >= len(row):
                    raise DataError(f"{path}:{number}: no label column {label_column}; set data.label_column")
                labels.append(row[label_column].strip())
                row = row[:label_column] + row[label_column + 1 :]
            try:
                values = np.array([float(v) if v.strip() not in ("", "?") else math.nan for v in row], np.float32)
            except ValueError:
                bad = next(v for v in row if not _number(v))
                raise DataError(f"{path}:{number}: {bad!r} is not a number; fix or remove the line") from None
            last = np.flatnonzero(~np.isnan(values))
            series.append(values[: last[-1] + 1 if len(last) else 0][None, :])  # trailing NaN: a shorter series
    if not series:
        raise DataError(f"{path}: no series in the file")
    return series, (np.array(labels) if label_column is not None else None)


def read_series_file(path: str | Path, label_column: int | None = 0, labels: str | Path | None = None) -> Arrays:
    """Series and labels from a file of the UCR/UEA archive (.ts, .tsv, .arff) or an array (.npy, .npz, .csv).

    `.npy`: (N, T) or (N, C, T) values (NaN where missing); labels from `labels` (a .npy or one-per-line
    text file) when given. `.npz`: arrays `x` and optionally `y`. `.csv`/`.tsv`: one univariate series per
    row, the label in column `label_column` (the archive's layout: first). A malformed file is a `DataError`
    naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give the path of a {'/'.join(FILE_FORMATS)} file")
    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise DataError(f"{path}: unknown series format {suffix!r}; use one of {', '.join(FILE_FORMATS)}")
    if suffix in (".tsv", ".csv"):
        series, y = read_delimited(path, "\t" if suffix == ".tsv" else ",", label_column)
    elif suffix in (".ts", ".arff"):
        series, y = _read_aeon(path, suffix)
    else:
        series, y = _read_numpy(path)
    if labels is not None:
        y = _read_labels(Path(labels), len(series))
    return series, y


def _read_aeon(path: Path, suffix: str) -> Arrays:
    from aeon.datasets import load_from_arff_file, load_from_ts_file

    check = _check_ts_line({}) if suffix == ".ts" else _check_arff_line({})
    try:
        if suffix == ".ts":
            x, y = load_from_ts_file(str(path))
        else:
            x, y = load_from_arff_file(str(path))
        series = [np.asarray(s, dtype=np.float32) for s in x]
    except Exception as err:  # aeon says what, not where: find the line
        where = _bad_line(path, check)
        if ":" not in where.removeprefix(str(path)):  # no line found wrong: say what aeon said
            where += f": {(str(err).splitlines() or [type(err).__name__])[0]}"
        fix = f"fix or remove the line (the {suffix} format: timeseriesclassification.com)"
        raise DataError(f"{where}; {fix}") from None
    if not series:
        raise DataError(f"{path}: no series in the file")
    return [s if s.ndim == 2 else s[None, :] for s in series], np.asarray(y).astype(str)


def _read_numpy(path: Path) -> Arrays:
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                if "x" not in arrays:
                    raise DataError(f"{path}: no array 'x' (it holds {', '.join(arrays.files)}); save x (and y) in it")
                x, y = arrays["x"], (arrays["y"] if "y" in arrays else None)
        else:
            x, y = np.load(path, allow_pickle=False), None
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable NumPy file ({err}); save it with numpy.save/savez") from None
    if x.ndim not in (2, 3) or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: series must be numbers of shape (N, T) or (N, C, T), got {x.dtype} {x.shape}")
    x = x.astype(np.float32)
    x = x[:, None, :] if x.ndim == 2 else x
    return [_trim_nan_tail(s) for s in x], (None if y is None else np.asarray(y).astype(str))


def _trim_nan_tail(s: np.ndarray) -> np.ndarray:
    observed = np.flatnonzero(~np.isnan(s).all(axis=0))
    return s[:, : observed[-1] + 1] if len(observed) else s[:, :0]


def _read_labels(path: Path, count: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: no such labels file; data.labels names a .npy or a text file, one label a line")
    if path.suffix.lower() == ".npy":
        y = np.load(path, allow_pickle=False).astype(str).ravel()
    else:
        y = np.array([line.strip() for line in path.read_text().splitlines() if line.strip()])
    if len(y) != count:
        raise DataError(f"{path}: {len(y)} labels for {count} series; give one label per series")
    return y
