"""Progress a person can watch: on a terminal, bars with an ETA (and a sweep's live table); in a log (a file, a
pipe, CI, a sweep's trial), the one-line summaries alone, since a bar's carriage returns would fill it with
thousands of half-lines.

The decision follows standard output, where the bars and summaries go: `contrastlab fit > log.txt` on a terminal
writes no bar into log.txt.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO, TypeVar

T = TypeVar("T")


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (standard output by default) is a terminal a person watches."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a stream without a file, or a closed one
        return False


def bar(iterable: Iterable[T], description: str) -> Iterable[T]:
    """`iterable` drawn as a bar with an ETA on a terminal (its length read where it has one), and left as it is
    elsewhere."""
    if not on_terminal():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=description, file=sys.stdout, dynamic_ncols=True)


def say(line: str) -> None:
    """Print one line above the bars being drawn, which a plain print would cut through; flushed, so that a log
    shows it at once."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()
