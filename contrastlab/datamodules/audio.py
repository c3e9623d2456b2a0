"""Audio files as raw waveforms: decoded with soundfile in the workers, resampled, cropped to one length.

Three ways to say what the files are, one DataModule each, sharing everything else (`AudioDataModule`):

- `AudioFolder`: `root/<class>/<file>` (Speech Commands, GTZAN), classes sorted by folder name; folders
  starting with `_` (`_background_noise_`) are not classes. Speech Commands' `validation_list.txt` and
  `testing_list.txt` in `root` give its official split.
- `FSDD`: the Free Spoken Digit Dataset's `{digit}_{speaker}_{index}.wav`, official split (index 0-4 test)
  or a speaker-independent one (`test_speakers`).
- `AudioManifest`: a CSV with a path and a label column, optionally a split and a group column.

Every sample is `{"x": float32 (C, T), "y": class or -1, "idx": i, "group": int}`. The group (a speaker, a
recording session, a track; -1 when the data has none) is what a split may be made by: `test_groups` and
`val_groups` name the groups held out, so no group is in two splits (speaker-independent evaluation).

Each file is decoded (WAV, FLAC, OGG: whatever libsndfile reads), mixed down to mono or kept at
`channels` channels, resampled to `sample_rate` (scipy's polyphase filter), then cut to `duration`
seconds: a random crop (or random placement of a shorter clip) for training, the centre for evaluation.
An unreadable or corrupt file is found when its split is listed (its header) or when it is decoded;
`on_bad_file: skip` drops it and counts it (`skipped_files`, logged), `stop` ends the run naming it
(datamodules/badfiles.py). Seeded splits follow datamodules/splits.py, the manifest datamodules/manifest.py.
The practitioner's baseline features (`hand_features`) are each clip's MFCC mean and standard deviation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from contrastlab.contract import DataInfo, HandFeatures
from contrastlab.datamodules.audio_features import mfcc_baseline
from contrastlab.datamodules.audio_files import AUDIO_EXTENSIONS, Decoding
from contrastlab.datamodules.badfiles import BadFiles, check_policy, list_readable, skip_collate
from contrastlab.datamodules.base import ContrastiveDataModule
from contrastlab.datamodules.manifest import read_manifest
from contrastlab.datamodules.splits import SPLITS, hold_out, seeded_split
from contrastlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DEFAULT_VIEWS = "contrastlab.augment.audio.CLMRViews"


@dataclass(frozen=True)
class Clip:
    """One file of the catalogue: where it is, its class (-1: none), its group name and official split."""

    path: Path
    label: int = -1
    group: str | None = None
    split: str | None = None


class AudioClips(Dataset):
    """Decodes one clip per item. Training items are random crops; `bad` says what to do with a bad file."""

    def __init__(self, clips: Sequence[Clip], groups: Sequence[str], decoding: Decoding, train: bool, bad: BadFiles):
        self.clips = list(clips)
        self.labels = [c.label for c in self.clips]
        group_ids = {g: i for i, g in enumerate(groups)}
        self.groups = [group_ids.get(c.group, -1) if c.group is not None else -1 for c in self.clips]
        self.decoding, self.train, self.bad_files = decoding, train, bad

    @property
    def skipped(self) -> int:
        """Files found bad while decoding, in any loader process."""
        return self.bad_files.decoded_count()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        clip = self.clips[i]
        wave = self.bad_files.read(i, clip.path, self.decoding.read)
        if wave is None:
            return None
        x = self.decoding.fit_length(wave, random=self.train)
        return {"x": x, "y": clip.label, "idx": i, "group": self.groups[i]}


audio_collate = skip_collate  # a file found bad in a worker (None) is left out of its batch


class AudioDataModule(ContrastiveDataModule):
    """Shared by the audio DataModules: decoding, fixed length, bad files, and splits by group or by sample.

    Args:
        sample_rate: Hz every file is resampled to.
        duration: seconds per sample (T = duration * sample_rate).
        channels: 1 mixes every file down to mono; N keeps N channels (a mono file is repeated, a file with
            another count is a bad file).
        on_bad_file: `skip` (drop it, count it, log it) or `stop` (end the run naming the file).
        test_groups, val_groups: groups (speakers, sessions...) held out as the test and validation splits,
            replacing any official split; the other groups train.
        val_fraction, test_fraction: where the data has no such split, the seeded share held out (by group
            when `split_by_group`, else by sample); val only, when the data has an official test split.
        split_by_group: seeded held-out shares are whole groups.
        views: the default view pipeline's class path.
    """

    dataset_name = "audio"

    def __init__(
        self,
        sample_rate: int = 16000,
        duration: float = 1.0,
        channels: int = 1,
        on_bad_file: str = "skip",
        test_groups: list[str] | None = None,
        val_groups: list[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_by_group: bool = False,
        views: str = DEFAULT_VIEWS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_policy(on_bad_file)
        if sample_rate <= 0 or duration <= 0:
            raise ConfigError(f"data.sample_rate and data.duration must be > 0, got {sample_rate} and {duration}")
        if channels < 1:
            raise ConfigError(f"data.channels must be >= 1, got {channels}")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= value < 1:
                raise ConfigError(f"data.{key} must be in [0, 1), got {value}")
        self.decoding = Decoding(int(sample_rate), int(round(duration * sample_rate)), int(channels))
        self.on_bad_file = on_bad_file
        self.test_groups = [str(g) for g in test_groups or []]
        self.val_groups = [str(g) for g in val_groups or []]
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_by_group = split_by_group
        self.views = views
        self.skipped_files: dict[str, list[str]] = {}  # split -> bad files found when it was listed
        self._catalogue: list[Clip] | None = None

    # -- what a subclass says ------------------------------------------------------------------------

    def catalogue(self) -> list[Clip]:
        """Every clip of the data, with its label, group and official split (None where there is none)."""
        raise NotImplementedError

    @property
    def classes(self) -> list[str]:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------------

    def clips(self) -> list[Clip]:
        if self._catalogue is None:
            self._catalogue = self.catalogue()
            if not self._catalogue:
                raise DataError(
                    f"data.root: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) found for {self.info.name}"
                )
            self._check_groups(self._catalogue)
        return self._catalogue

    @property
    def groups(self) -> list[str]:
        """Group names, sorted; a sample's `group` is its index here."""
        return sorted({c.group for c in self.clips() if c.group is not None})

    def _check_groups(self, clips: list[Clip]) -> None:
        known = {c.group for c in clips if c.group is not None}
        for key, wanted in (("test_groups", self.test_groups), ("val_groups", self.val_groups)):
            unknown = sorted(set(wanted) - known)
            if unknown:
                listed = ", ".join(sorted(known)[:12]) or "none: this data has no groups"
                raise ConfigError(f"data.{key}: {', '.join(unknown)} not among the data's groups ({listed})")
        both = sorted(set(self.test_groups) & set(self.val_groups))
        if both:
            raise ConfigError(f"data.test_groups and data.val_groups share {', '.join(both)}: a group is in one split")

    @property
    def info(self) -> DataInfo:
        return DataInfo(
            self.dataset_name,
            "audio",
            (self.decoding.channels, self.decoding.length),
            len(self.classes),
            sample_rate=float(self.decoding.sample_rate),
            views=self.views,
            extra={"classes": list(self.classes)},
        )

    def hand_features(self) -> dict[str, HandFeatures]:
        """MFCC mean+std of each clip: the speech practitioner's first classifier input (raw waveforms are no
        baseline: a shift of a few samples moves them far apart)."""
        return {"mfcc": mfcc_baseline(self.decoding.sample_rate)}

    def assign_splits(self, clips: list[Clip]) -> dict[str, list[Clip]]:
        """Clips of each split: held-out groups, else the official split, else seeded shares (splits.py)."""
        if self.test_groups or self.val_groups:
            out: dict[str, list[Clip]] = {s: [] for s in SPLITS}
            for c in clips:
                out["test" if c.group in self.test_groups else "val" if c.group in self.val_groups else "train"].append(
                    c
                )
            if not self.val_groups:  # test by group, val a seeded share of the training groups
                out["train"], out["val"] = self._hold_out(out["train"], self.val_fraction)
            return out
        if any(c.split is not None for c in clips):
            out = {s: [c for c in clips if c.split == s] for s in SPLITS}
            if not out["val"]:
                out["train"], out["val"] = self._hold_out(out["train"], self.val_fraction)
            return out
        chosen = seeded_split(len(clips), self.val_fraction, self.test_fraction, self.seed, self._groups_of(clips))
        return {s: [clips[i] for i in chosen[s]] for s in SPLITS}

    def _groups_of(self, clips: list[Clip]) -> list[str | None] | None:
        return [c.group for c in clips] if self.split_by_group and any(c.group is not None for c in clips) else None

    def _hold_out(self, clips: list[Clip], fraction: float) -> tuple[list[Clip], list[Clip]]:
        """(kept, held out): a seeded share of the clips, or of their groups when `split_by_group`."""
        kept, held = hold_out(len(clips), fraction, self.seed, self._groups_of(clips))
        return [clips[i] for i in kept], [clips[i] for i in held]

    def _readable(self, clips: list[Clip], split: str) -> list[Clip]:
        """The clips whose header libsndfile reads; the others stop the run or are skipped and counted."""
        import soundfile as sf

        good, bad = list_readable([c.path for c in clips], self.on_bad_file, "audio", lambda p: sf.info(str(p)))
        if bad:
            self.skipped_files[split] = bad
            log.warning("%s %s: skipped %d unreadable audio files, e.g. %s", self.info.name, split, len(bad), bad[0])
        return [clips[i] for i in good]

    def load_split(self, split: str) -> AudioClips:
        clips = self._readable(self.assign_splits(self.clips())[split], split)
        if not clips:
            raise DataError(
                f"{self.info.name}: the {split} split has no readable audio files; check data.root and the split keys"
            )
        bad = BadFiles(self.on_bad_file, "audio", len(clips), self.skipped_files.get(split))
        return AudioClips(clips, self.groups, self.decoding, train=split == "train", bad=bad)

    def collate(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        return audio_collate(samples)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


class AudioFolder(AudioDataModule):
    """`root/<class>/<file>`: Speech Commands (`root/<word>/<speaker>_nohash_<n>.wav`) and GTZAN
    (`root/<genre>/<genre>.000NN.wav`) layouts.

    Args:
        root: the folder; `train/`, `val/`, `test/` subfolders (each `<class>/<file>`), or Speech Commands'
            `validation_list.txt` and `testing_list.txt` in it, give an official split.
        group_pattern: a regular expression over the file name whose first group is the sample's group
            (Speech Commands' speaker: `^([^_]+)_nohash_`); none by default.
        name: the dataset's name (default: the folder's name).
    """

    def __init__(self, root: str, group_pattern: str | None = None, name: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data.root: folder {self.root} not found; point it at a folder of <class>/<audio file>")
        try:
            self.group_pattern = re.compile(group_pattern) if group_pattern else None
        except re.error as err:
            raise ConfigError(f"data.group_pattern: {group_pattern!r} is not a regular expression ({err})") from err
        self.dataset_name = name or self.root.name
        self.split_folders = (self.root / "train").is_dir()
        base = self.root / "train" if self.split_folders else self.root
        self._classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        if not self._classes:
            raise DataError(f"data.root: no class folders in {base}; the layout is root/<class>/<audio file>")

    @property
    def classes(self) -> list[str]:
        return self._classes

    def _group(self, path: Path) -> str | None:
        if self.group_pattern is None:
            return None
        match = self.group_pattern.search(path.name)
        return match.group(1) if match and match.groups() else None

    def catalogue(self) -> list[Clip]:
        folders = [(s, self.root / s) for s in SPLITS] if self.split_folders else [(None, self.root)]
        listed = self._listed_splits()
        clips = []
        for split, folder in folders:
            for label, name in enumerate(self._classes):
                for path in _audio_files(folder / name):
                    relative = path.relative_to(self.root).as_posix()
                    clip_split = split or listed.get(relative, "train" if listed else None)
                    clips.append(Clip(path, label, self._group(path), clip_split))
        return clips

    def _listed_splits(self) -> dict[str, str]:
        """Speech Commands' official split: files named in validation_list.txt / testing_list.txt."""
        out = {}
        for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
            listing = self.root / name
            if listing.is_file():
                out.update({line.strip(): split for line in listing.read_text().splitlines() if line.strip()})
        return out


def _one_of(name: str, value: list[str] | None, alias: str, alias_value: list[str] | None) -> list[str] | None:
    """The one of two names for the same option that was given; both, differently, is a ConfigError. (A parser
    passes every parameter, the unset ones as None, so an alias filled in with `setdefault` would be ignored.)"""
    if value is not None and alias_value is not None and list(value) != list(alias_value):
        raise ConfigError(f"data.{name}={list(value)} and data.{alias}={list(alias_value)} disagree: give {name} only")
    return value if value is not None else alias_value


FSDD_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)$")


class FSDD(AudioDataModule):
    """The Free Spoken Digit Dataset: `root/{digit}_{speaker}_{index}.wav`, 8 kHz mono (github.com/Jakobovski/
    free-spoken-digit-dataset; not downloaded: clone it and point `root` at its `recordings/`).

    The official split puts takes 0-4 of every speaker and digit in test (`test_takes`: takes below it are
    test); `test_speakers` (with optional `val_speakers`) makes a speaker-independent split instead: those
    speakers' files are the test set and no speaker is in two splits. The group of a sample is its speaker.
    """

    dataset_name = "fsdd"

    def __init__(
        self,
        root: str = "../shared/data/fsdd/recordings",
        test_speakers: list[str] | None = None,
        val_speakers: list[str] | None = None,
        sample_rate: int = 8000,
        test_takes: int = 5,
        **kwargs,
    ):
        self.test_takes = test_takes
        kwargs["test_groups"] = _one_of("test_speakers", test_speakers, "test_groups", kwargs.get("test_groups"))
        kwargs["val_groups"] = _one_of("val_speakers", val_speakers, "val_groups", kwargs.get("val_groups"))
        super().__init__(sample_rate=sample_rate, **kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(
                f"data.root: folder {self.root} not found; clone github.com/Jakobovski/free-spoken-digit-dataset "
                "and point data.root at its recordings/ folder"
            )

    @property
    def classes(self) -> list[str]:
        return [str(d) for d in range(10)]

    def catalogue(self) -> list[Clip]:
        clips = []
        for path in sorted(self.root.iterdir()):
            match = FSDD_NAME.match(path.stem)
            if path.suffix.lower() not in AUDIO_EXTENSIONS or not match:
                continue
            digit, speaker, take = match.groups()
            clips.append(Clip(path, int(digit), speaker, "test" if int(take) < self.test_takes else "train"))
        return clips


class AudioManifest(AudioDataModule):
    """A CSV manifest (datamodules/manifest.py): one row per file with its path (relative to the CSV's folder, or
    absolute) and label, optionally its split (`train`, `val`/`validation`, `test`) and its group (any column:
    speaker, session, track). Classes follow the manifest's order (numbers by value, then text); an empty label
    is unlabelled.

    Args:
        manifest: the CSV file (with a header row).
        path_column, label_column, split_column, group_column: the columns to read; a missing optional
            column means the data has none (label_column: null for unlabelled data).
        name: the dataset's name (default: the CSV's stem).
    """

    def __init__(
        self,
        manifest: str,
        path_column: str = "path",
        label_column: str | None = "label",
        split_column: str | None = "split",
        group_column: str | None = "group",
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.manifest = read_manifest(manifest, None, path_column, label_column, split_column, group_column)
        self.dataset_name = name or self.manifest.path.stem

    @property
    def classes(self) -> list[str]:
        return self.manifest.classes

    def catalogue(self) -> list[Clip]:
        return [Clip(r.path, self.manifest.label(r), r.group, r.split) for r in self.manifest.rows]
