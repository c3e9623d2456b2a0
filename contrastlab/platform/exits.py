"""How every contrastlab command ends on a mistake the user can fix: one line, secrets hidden, status 2."""

from __future__ import annotations

import sys

from contrastlab.errors import find_user_error
from contrastlab.platform.stores import redact_text

USER_ERROR_EXIT = 2


def user_error_exit(exc: BaseException) -> int | None:
    """Print the ContrastlabError behind `exc` as one `contrastlab: error:` line and return USER_ERROR_EXIT;
    None when there is none (the caller re-raises `exc`, its traceback intact: that is a bug to report)."""
    err = find_user_error(exc)
    if err is None:
        return None
    print(f"contrastlab: error: {redact_text(str(err))}", file=sys.stderr)
    return USER_ERROR_EXIT
