"""Paired data: a sample (an image, an audio clip, any array) and its text, listed in a CSV.

`PairedCSV` reads one CSV whose rows name a file and its text (a report, a caption), with optional labels and
an optional split column; `MIMICCXR` and `CheXpert` (datamodules/radiology.py) read those datasets' own files
and column names. Samples
are raw: `{"x": uint8 image | float waveform | array, "text": str, "y": label, "idx": i}`; the collate
tokenises the texts into `input_ids` and `attention_mask` (datamodules/text.py), in the loader's workers.

Labels are a class (`label_column`: names or indices) or multi-label 0/1 (`label_columns`). Radiology
labellers (CheXpert's, used by MIMIC-CXR too) write 1 positive, 0 negative, -1 uncertain and blank for not
mentioned: blank is read as 0, and `uncertain` maps -1 to 0 (`zeros`, U-Zeros), 1 (`ones`, U-Ones; Irvin et al.
2019) or leaves it unknown (`ignore`: -1, which evaluation and the online probe mask out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from contrastlab.contract import DataInfo
from contrastlab.datamodules.audio_files import AudioReader
from contrastlab.datamodules.badfiles import BadFiles, check_policy, drop_bad
from contrastlab.datamodules.base import ContrastiveDataModule
from contrastlab.datamodules.images import ImageDecoder
from contrastlab.datamodules.manifest import class_order, need_columns, read_csv, split_name
from contrastlab.datamodules.splits import SPLITS, hold_out, seeded_split
from contrastlab.datamodules.studies import StudyReader
from contrastlab.datamodules.text import TextTokenizer
from contrastlab.errors import ConfigError, DataError

KINDS = ("image", "audio", "volume", "array")
UNCERTAIN = {"zeros": 0, "ones": 1, "ignore": -1}
DEFAULT_VIEWS = {
    "image": "contrastlab.augment.vision.ImageViews",
    "audio": "contrastlab.augment.audio.CLMRViews",
    "volume": "contrastlab.augment.volume.VolumeViews",
}


def label_value(raw: str, uncertain: int) -> int:
    """A radiology label cell: '1'/'1.0' positive, '0' negative, '-1' uncertain (by policy), blank not mentioned (0)."""
    raw = raw.strip()
    if not raw:
        return 0
    value = int(float(raw))
    return uncertain if value == -1 else int(value > 0)


def split_sentences(text: str) -> list[str]:
    """A text's sentences (ended by . ! or ? and a space); the text itself when it has one or none."""
    import re

    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", text) if p.strip()]
    return parts or [text]


def read_array(path: Path) -> Tensor:
    try:
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        return torch.load(path, weights_only=True)
    except Exception as err:  # numpy and torch raise many kinds for a bad file
        raise DataError(f"{path} cannot be read as an array (.npy, or a tensor saved by torch.save): {err}") from err


class PairedSamples(Dataset):
    """Rows of (file, text, label) read on access: the sample decoded, the text as written."""

    def __init__(self, files: list[Path], texts: list[str], labels: list[Any], read, bad: BadFiles):
        self.files, self.texts, self.labels, self.read, self.bad_files = files, texts, labels, read, bad

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        x = self.bad_files.read(i, self.files[i], self.read)
        return None if x is None else {"x": x, "text": self.texts[i], "y": self.labels[i], "idx": i}


class PairedCSV(ContrastiveDataModule):
    """Pairs of a file and its text from a CSV, for two-tower training (ConVIRT, CLIP, CLAP).

    Args:
        csv: the CSV; relative file paths in it are read from `root` (default: the CSV's folder).
        kind: what the files are: `image` (decoded, resized and centre-cropped to `size`), `audio` (mono,
            resampled to `sample_rate`, cut or padded to `clip_seconds`), `volume` (a NIfTI file or a DICOM
            series folder, read as datamodules/medical.py does: resampled to `spacing`, normalised by
            `intensity`, centre-cropped or padded to `volume_shape`) or `array` (.npy or torch-saved tensors).
        path_column, text_column: the columns naming the file and holding its text; `text_columns` joins several
            (e.g. a report's findings and impression sections), skipping empty cells.
        label_column: one class per row (names or indices); `class_names` fixes their order (default: the
            manifest's class order, datamodules/manifest.py: numbers by value, then text).
        label_columns: multi-label 0/1 columns instead (radiology convention, see the module docstring).
        uncertain: how a -1 label cell is read: zeros, ones or ignore.
        split_column: a column holding train/val/test (also valid, validate); without it a seeded split holds
            out `val_fraction` and `test_fraction` of the rows (with it but no val rows, `val_fraction` of train),
            by the rule of datamodules/splits.py.
        on_bad_file: `stop` (the default: end the run naming the file) or `skip` (drop it from its batch, count
            it), for a file that cannot be decoded.
        tokenizer: `wordpiece` or `bpe` (trained on the training split's texts and cached, see
            datamodules/text.py), or a local Hugging Face model folder whose tokenizer to use.
        vocab_size, max_tokens: the trained vocabulary's size; texts are cut at `max_tokens` tokens.
        tokenizer_dir: where the trained tokenizer is cached (default: the CSV's folder).
        sentences: also tokenise each sentence of a text, so that a paired method trains on one sentence per
            step, drawn on the device (ConVIRT's text augmentation, augment/text.py); evaluation reads whole texts.
        modality, views: the sample's modality (a run tag; default: `kind`) and the class path of its default
            view pipeline (images: ImageViews, audio: CLMRViews; arrays: give one, or set model.augment).
        name: the dataset's name (the MLflow experiment; default: the CSV's folder name).
    """

    def __init__(
        self,
        csv: str,
        root: str | None = None,
        kind: str = "image",
        path_column: str = "path",
        text_column: str = "text",
        text_columns: list[str] | None = None,
        label_column: str | None = None,
        label_columns: list[str] | None = None,
        class_names: list[str] | None = None,
        uncertain: str = "zeros",
        split_column: str | None = "split",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        size: int = 224,
        channels: int = 1,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        sample_rate: int = 16000,
        clip_seconds: float = 1.0,
        volume_shape: tuple[int, int, int] = (32, 32, 32),
        spacing: tuple[float, float, float] | None = None,
        intensity: str = "minmax",
        tokenizer: str = "wordpiece",
        vocab_size: int = 4000,
        max_tokens: int = 64,
        tokenizer_dir: str | None = None,
        sentences: bool = False,
        modality: str | None = None,
        views: str | None = None,
        name: str | None = None,
        on_bad_file: str = "stop",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.on_bad_file = check_policy(on_bad_file)
        if kind not in KINDS:
            raise ConfigError(f"data.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if uncertain not in UNCERTAIN:
            raise ConfigError(f"data.uncertain must be one of {', '.join(UNCERTAIN)}, got {uncertain!r}")
        if label_column and label_columns:
            raise ConfigError("data: give label_column (one class per row) or label_columns (multi-label), not both")
        self.csv = Path(csv).expanduser()
        self.root = Path(root).expanduser() if root else self.csv.parent
        self.kind, self.size, self.channels = kind, size, channels
        self.sample_rate, self.num_samples = sample_rate, int(round(clip_seconds * sample_rate))
        self.volume_shape = tuple(int(v) for v in volume_shape)
        self.spacing = tuple(float(v) for v in spacing) if spacing is not None else None
        self.intensity = intensity
        self.label_column, self.label_columns = label_column, list(label_columns or [])
        self.class_names = list(class_names) if class_names else None
        self.uncertain = UNCERTAIN[uncertain]
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.tokenizer_spec, self.vocab_size, self.max_tokens = tokenizer, vocab_size, max_tokens
        self.tokenizer_dir = Path(tokenizer_dir).expanduser() if tokenizer_dir else self.csv.parent / "tokenizers"
        self.modality = modality or kind
        self.sentences = sentences
        self.views = views or DEFAULT_VIEWS.get(kind, "")
        self.name = name or self.csv.parent.name
        self.mean = tuple(mean) if mean else (0.5,) * channels
        self.std = tuple(std) if std else (0.25,) * channels
        self.path_column, self.text_columns = path_column, list(text_columns or [text_column])
        self.split_column = split_column
        self._rows: dict[str, list[tuple[Path, str, Any]]] | None = None
        self._tokenizer: TextTokenizer | None = None
        self._info: DataInfo | None = None

    # -- the table --------------------------------------------------------------------------------------

    def read_table(self) -> list[dict[str, Any]]:
        """Rows `{"path": Path, "text": str, "y": label, "split": name or None}`; layouts override it."""
        columns, rows = read_csv(self.csv, "data.csv")
        text_key = "text_column" if len(self.text_columns) == 1 else "text_columns"
        wanted = [("path_column", self.path_column), ("label_column", self.label_column)]
        wanted += [(text_key, c) for c in self.text_columns] + [("label_columns", c) for c in self.label_columns]
        split_column = self.split_column if self.split_column in columns else None
        need_columns(columns, wanted, self.csv)
        return [
            {
                "path": self.resolve(row[self.path_column]),
                "text": self.join_text(row[c] for c in self.text_columns),
                "y": self.row_label(row),
                "split": row[split_column] if split_column else None,
            }
            for row in rows
        ]

    def resolve(self, name: str) -> Path:
        path = Path(name.strip()).expanduser()
        return path if path.is_absolute() else self.root / path

    @staticmethod
    def join_text(cells) -> str:
        return " ".join(c.strip() for c in cells if c and c.strip())

    def row_label(self, row: dict[str, str]) -> Any:
        if self.label_columns:
            return [label_value(row[c] or "", self.uncertain) for c in self.label_columns]
        if self.label_column:
            return (row[self.label_column] or "").strip()
        return -1

    def _table(self) -> dict[str, list[tuple[Path, str, Any]]]:
        if self._rows is not None:
            return self._rows
        rows = self.read_table()
        if not rows:
            raise DataError(f"data.csv: {self.csv} lists no samples")
        if self.label_column:
            self._encode_classes(rows)
        splits: dict[str, list] = {name: [] for name in SPLITS}
        if all(r["split"] is not None for r in rows):
            for line, r in enumerate(rows, start=2):
                splits[split_name(r["split"], f"data.split_column: {self.csv} line {line}")].append(r)
            if not splits["val"]:  # a split with no validation rows: hold some out of train
                keep, held = hold_out(len(splits["train"]), self.val_fraction, self.seed)
                splits["train"], splits["val"] = [splits["train"][i] for i in keep], [splits["train"][i] for i in held]
        else:
            chosen = seeded_split(len(rows), self.val_fraction, self.test_fraction, self.seed)
            splits = {name: [rows[i] for i in chosen[name]] for name in SPLITS}
        exists = Path.exists if self.kind == "volume" else Path.is_file  # a DICOM series is a folder
        missing = [r["path"] for r in rows if not exists(r["path"])]
        if missing:
            raise DataError(
                f"data.csv: {len(missing)} of the {len(rows)} files {self.csv.name} lists are missing, the first "
                f"{missing[0]}; fix data.root (files are read relative to it) or the {self.path_column!r} column"
            )
        self._rows = {k: [(r["path"], r["text"], r["y"]) for r in v] for k, v in splits.items()}
        return self._rows

    def _encode_classes(self, rows: list[dict[str, Any]]) -> None:
        names = self.class_names or class_order(r["y"] for r in rows)
        index = {n: i for i, n in enumerate(names)}
        for r in rows:
            if r["y"] == "":
                r["y"] = -1
            elif r["y"] in index:
                r["y"] = index[r["y"]]
            elif r["y"].lstrip("-").isdigit() and 0 <= int(r["y"]) < len(names):
                r["y"] = int(r["y"])
            else:
                raise DataError(f"data.label_column: {r['y']!r} in {self.csv} is not one of data.class_names {names}")
        self.class_names = names

    # -- the contract -------------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            if self.tokenizer_spec in ("wordpiece", "bpe"):
                texts = [text for _, text, _ in self._table()["train"]]
                self._tokenizer = TextTokenizer.trained(
                    texts, self.tokenizer_spec, self.vocab_size, self.max_tokens, self.tokenizer_dir
                )
            else:
                self._tokenizer = TextTokenizer.from_pretrained(self.tokenizer_spec, self.max_tokens)
        return self._tokenizer

    @property
    def info(self) -> DataInfo:
        if self._info is None:
            table = self._table()
            if self.kind == "image":
                shape: tuple[int, ...] = (self.channels, self.size, self.size)
            elif self.kind == "audio":
                shape = (1, self.num_samples)
            elif self.kind == "volume":
                shape = (1, *self.volume_shape)
            else:
                shape = tuple(read_array(table["train"][0][0]).shape)
            classes = self.label_columns or self.class_names or []
            self._info = DataInfo(
                self.name,
                self.modality,
                shape,
                len(classes),
                multilabel=bool(self.label_columns),
                mean=self.mean if self.kind in ("image", "volume") else (),
                std=self.std if self.kind in ("image", "volume") else (),
                sample_rate=float(self.sample_rate) if self.kind == "audio" else None,
                views=self.views,
                extra={"text": dict(self.tokenizer.info), "class_names": list(classes)},
            )
        return self._info

    def reader(self):
        if self.kind == "image":
            return ImageDecoder(self.size, self.channels)
        if self.kind == "audio":
            return AudioReader(self.sample_rate, self.num_samples)
        if self.kind == "volume":
            return StudyReader(self.volume_shape, self.spacing, self.intensity)
        return read_array

    def load_split(self, split: str) -> Dataset:
        rows = self._table()[split]
        labels = [torch.tensor(y) if isinstance(y, list) else y for _, _, y in rows]
        bad = BadFiles(self.on_bad_file, self.kind, len(rows))
        return PairedSamples([p for p, _, _ in rows], [t for _, t, _ in rows], labels, self.reader(), bad)

    def collate(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        samples = drop_bad(samples)
        batch = default_collate([{k: v for k, v in s.items() if k != "text"} for s in samples])
        texts = [s["text"] for s in samples]
        batch.update(self.tokenizer(texts))
        if self.sentences:  # every sentence tokenised once; a paired method draws one per step (augment/text.py)
            split = [split_sentences(t) for t in texts]
            tokens = self.tokenizer([sentence for parts in split for sentence in parts])
            sentence_of = torch.full((len(split), max(len(p) for p in split)), -1, dtype=torch.long)
            start = 0
            for row, parts in enumerate(split):
                sentence_of[row, : len(parts)] = torch.arange(start, start + len(parts))
                start += len(parts)
            batch.update(
                sentence_ids=tokens["input_ids"], sentence_mask=tokens["attention_mask"], sentence_of=sentence_of
            )
        return batch
