"""User-facing errors, shared by every layer: one clear line naming the key or file and the fix."""

from __future__ import annotations


class ContrastlabError(Exception):
    """A mistake in a config, a data path or a checkpoint that the user can fix.

    The CLI prints the message alone, without a traceback, and exits with status 2.
    """


class ConfigError(ContrastlabError, ValueError):
    """A config value is wrong: the message names the key and what to put there."""


class DataError(ContrastlabError, FileNotFoundError):
    """A dataset file or folder is missing or unreadable: the message names the path and how to get it."""


class CheckpointError(ContrastlabError):
    """A checkpoint cannot be used: the message names the file and what to do instead."""


class TrainingDiverged(ContrastlabError):
    """The training loss became NaN or infinite: the message names the step, the value and what to change.

    `reason` is the short form (`non-finite training loss (nan) at epoch 1, step 7`) that runs record.
    """

    def __init__(self, reason: str, advice: str):
        super().__init__(f"training diverged: {reason}; {advice}")
        self.reason = reason


def find_user_error(exc: BaseException) -> ContrastlabError | None:
    """The ContrastlabError behind `exc`, following the chain that libraries wrap errors in."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ContrastlabError):
            return err
        stack.extend([err.__cause__, err.__context__])
    return None
