"""What a DataModule that reads files does with one it cannot read: `on_bad_file: stop | skip`.

- `stop` ends the run with one line naming the file and why (a `DataError`).
- `skip` drops the file and counts it. A file found bad when its split is listed is left out of the split
  (`BadFiles.listed`); one found bad when it is decoded, in the main process or in a DataLoader worker,
  makes its item `None`, which the collate leaves out of its batch (`drop_bad`). The decoded-bad files are
  flagged in a shared-memory tensor (one flag per item), so the main process counts the files that worker
  processes found; a flagged file is not read again. `ContrastiveDataModule.skipped_count()` adds them up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from contrastlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BAD_FILE_CHOICES = ("skip", "stop")


def check_policy(on_bad_file: str) -> str:
    if on_bad_file not in BAD_FILE_CHOICES:
        raise ConfigError(f"data.on_bad_file must be one of {', '.join(BAD_FILE_CHOICES)}, got {on_bad_file!r}")
    return on_bad_file


def bad_file(path: Path | str, what: str, err: Exception) -> DataError:
    """The `stop` error: one line naming the file, what is wrong with it, and the two ways out."""
    if isinstance(err, DataError) and str(path) in str(err):  # the reader already named the file
        return DataError(f"{err}; or set data.on_bad_file: skip")
    return DataError(f"{path}: unreadable {what} ({err}); fix or remove it, or set data.on_bad_file: skip")


class BadFiles:
    """The policy of one split's dataset and the count of its bad files, shared with loader workers.

    Args:
        policy: `stop` or `skip`.
        what: what the files are ("audio", "image", "study"), for the messages.
        size: the number of items of the dataset (one flag each).
        listed: files already left out when the split was listed.
    """

    def __init__(self, policy: str, what: str, size: int, listed: list[str] | None = None):
        self.policy, self.what = check_policy(policy), what
        self.flags = torch.zeros(size, dtype=torch.bool).share_memory_()
        self.listed = list(listed or [])

    def read(self, i: int, path: Path, read: Callable[[Path], Any]) -> Any:
        """`read(path)`, or under `skip` None for a bad file (flagged, logged once); `stop` raises `bad_file`."""
        if self.flags[i]:
            return None
        try:
            return read(path)
        except Exception as err:  # decoders raise many kinds for a bad file: any of them means this file is bad
            if self.policy == "stop":
                raise bad_file(path, self.what, err) from err
            self.flags[i] = True
            log.warning("skipping unreadable %s file %s (%s)", self.what, path, err)
            return None

    def decoded_count(self) -> int:
        """Files found bad while decoding, in any process."""
        return int(self.flags.sum())

    def count(self) -> int:
        """Files skipped: left out when listed plus found bad while decoding."""
        return len(self.listed) + self.decoded_count()


def list_readable(
    paths: list[Path], policy: str, what: str, check: Callable[[Path], Any]
) -> tuple[list[int], list[str]]:
    """(indices of the readable paths, the bad ones) by `check(path)` (a cheap test: a header, existence);
    under `stop` the first bad one raises `bad_file`."""
    good, bad = [], []
    for i, path in enumerate(paths):
        try:
            check(path)
            good.append(i)
        except Exception as err:  # libraries raise their own error types, and OSError for a missing file
            if policy == "stop":
                raise bad_file(path, what, err) from err
            bad.append(str(path))
    return good, bad


def drop_bad(samples: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The samples that decoded; a batch with none left is an error."""
    kept = [s for s in samples if s is not None]
    if not kept:
        raise DataError("every file of a batch was unreadable (see the warnings above); check data.root")
    return kept


def skip_collate(samples: list[dict[str, Any] | None]) -> dict[str, Any]:
    """`default_collate` of the samples that decoded."""
    return default_collate(drop_bad(samples))
