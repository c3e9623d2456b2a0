"""The CSV manifest every file-reading DataModule may be given: one row per file, with its path, and optionally
its label, its split and its group (speaker, patient, session: what a split holds out whole).

One reader (`read_manifest`) and three rules, shared by the audio, paired and medical DataModules:

- `SPLIT_NAMES`: a split cell is train, val (also valid, validate, validation) or test, in any case; any
  other value, a blank one included, is an error naming the file and line. Without a split column the split
  is seeded (splits.py); with one but no val rows, val is a seeded share of train.
- `class_order`: classes are the labels' set, numbers first by value (when a label parses as a finite
  number: 2 before 10), then the other labels in text order. An empty label cell is unlabelled (-1).
- paths are relative to `root` (default: the CSV's folder) unless absolute; `~` is expanded.

A new DataModule over a manifest is one short file: a `ContrastiveDataModule` whose `load_split` returns
`ManifestSamples(manifest, manifest.splits(seed, val, test)[split], read, BadFiles(on_bad_file, ...))` and whose
collate is `skip_collate` (tests/datamodules/test_manifest.py defines one and trains it).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from contrastlab.datamodules.badfiles import BadFiles
from contrastlab.datamodules.splits import SPLITS, Share, seeded_split
from contrastlab.errors import ConfigError, DataError

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validate": "val", "validation": "val", "test": "test"}


def split_name(raw: str, where: str) -> str:
    """train, val or test for a split cell (see SPLIT_NAMES); `where` names the file and line in the error."""
    name = SPLIT_NAMES.get(raw.strip().lower())
    if name is None:
        raise DataError(f"{where}: split {raw.strip()!r}; use train, val (valid, validate, validation) or test")
    return name


def _number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def class_order(labels: Iterable[str]) -> list[str]:
    """The classes of a set of label cells: numbers first by value, then text labels in text order; blanks none."""
    names = {label.strip() for label in labels if label and label.strip()}

    def key(label: str) -> tuple:
        value = _number(label)
        return (0, value, label) if value is not None else (1, 0.0, label)

    return sorted(names, key=key)


def read_csv(path: Path, key: str = "data.manifest") -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a CSV with a header row; a missing file is a DataError naming `key`."""
    if not path.is_file():
        raise DataError(f"{key}: {path} not found; give a CSV with a header row and one row per file")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def need_columns(columns: list[str], wanted: Iterable[tuple[str, str | None]], path: Path) -> None:
    """Refuse, naming the config key, a column the CSV lacks; `wanted` holds (config key, column or None)."""
    for key, column in wanted:
        if column is not None and column not in columns:
            raise ConfigError(f"data.{key}: {column!r} is not a column of {path} (its columns: {', '.join(columns)})")


@dataclass(frozen=True)
class Row:
    """One file of a manifest: its path, label cell ("" unlabelled), split (None: none given) and group."""

    path: Path
    label: str = ""
    split: str | None = None
    group: str | None = None
    line: int = 0


@dataclass
class Manifest:
    """A read manifest: its rows, classes (by `class_order`) and groups (sorted names; a row's id is its index)."""

    path: Path
    rows: list[Row]
    classes: list[str]
    columns: list[str]

    @cached_property
    def groups(self) -> list[str]:
        return sorted({r.group for r in self.rows if r.group is not None})

    @cached_property
    def _index(self) -> tuple[dict[str, int], dict[str, int]]:
        return {c: i for i, c in enumerate(self.classes)}, {g: i for i, g in enumerate(self.groups)}

    def label(self, row: Row) -> int:
        """A row's class index, -1 when unlabelled."""
        return self._index[0][row.label] if row.label else -1

    def group(self, row: Row) -> int:
        """A row's group id (its index in `groups`), -1 when it has none."""
        return self._index[1][row.group] if row.group is not None else -1

    def splits(self, seed: int = 0, val: Share = 0.1, test: Share = 0.1, by_group: bool = True) -> dict[str, list[Row]]:
        """The rows of each split: the split column where every row has one (and, when no row is `val`, a
        seeded `val` share of train); else a seeded split (splits.py), by group when `by_group`."""
        if self.rows and all(r.split is not None for r in self.rows):
            out = {s: [r for r in self.rows if r.split == s] for s in SPLITS}
            if not out["val"]:
                train = out["train"]
                chosen = seeded_split(len(train), val=val, seed=seed, groups=self._groups(train, by_group))
                out["train"], out["val"] = [train[i] for i in chosen["train"]], [train[i] for i in chosen["val"]]
            return out
        chosen = seeded_split(len(self.rows), val=val, test=test, seed=seed, groups=self._groups(self.rows, by_group))
        return {s: [self.rows[i] for i in chosen[s]] for s in SPLITS}

    @staticmethod
    def _groups(rows: list[Row], by_group: bool) -> list[str | None] | None:
        return [r.group for r in rows] if by_group and any(r.group is not None for r in rows) else None


def read_manifest(
    path: str | Path,
    root: str | Path | None = None,
    path_column: str = "path",
    label_column: str | None = "label",
    split_column: str | None = "split",
    group_column: str | None = "group",
    key: str = "data.manifest",
    optional_label: bool = False,
) -> Manifest:
    """Read a manifest CSV. The path column must exist, and the label column when named (unless
    `optional_label`: then a CSV without it is unlabelled); split and group columns are optional (absent from the
    CSV: the data has none). Paths are read relative to `root` (default: the CSV's folder)."""
    path = Path(path).expanduser()
    columns, raw = read_csv(path, key)
    if optional_label and label_column not in columns:
        label_column = None
    need_columns(columns, [("path_column", path_column), ("label_column", label_column)], path)
    base = Path(root).expanduser() if root is not None else path.parent
    split_column = split_column if split_column in columns else None
    group_column = group_column if group_column in columns else None
    rows = []
    for line, row in enumerate(raw, start=2):
        file = Path((row[path_column] or "").strip()).expanduser()
        group = (row[group_column] or "").strip() if group_column else ""
        rows.append(
            Row(
                file if file.is_absolute() else base / file,
                (row[label_column] or "").strip() if label_column else "",
                split_name(row[split_column] or "", f"{path} line {line}") if split_column else None,
                group or None,
                line,
            )
        )
    return Manifest(path, rows, class_order(r.label for r in rows), columns)


class ManifestSamples(Dataset):
    """The rows of one split, each file read on access (in loader workers) by `read(path)`:
    `{"x": read(path), "y": class or -1, "idx": i, "group": group id or -1}`; a bad file is `bad`'s to handle
    (under `skip` the item is None, which `badfiles.skip_collate` leaves out of its batch)."""

    def __init__(self, manifest: Manifest, rows: list[Row], read: Callable[[Path], Any], bad: BadFiles | None = None):
        self.files = [r.path for r in rows]
        self.labels = [manifest.label(r) for r in rows]
        self.groups = [manifest.group(r) for r in rows]
        self.read = read
        self.bad_files = bad or BadFiles("stop", "file", len(rows))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        x = self.bad_files.read(i, self.files[i], self.read)
        return None if x is None else {"x": x, "y": self.labels[i], "idx": i, "group": self.groups[i]}
