"""Check a run config the way `contrastlab fit` would parse it, without building or running anything.

Sweeps call this before their first trial (so a bad key in a search space is one line, not N failed
trials); it is the one entry point from `sweeps` into the run CLI, which keeps the import direction
`sweeps -> platform`.
"""

from __future__ import annotations

import warnings
from pathlib import Path


def check_run_config(config: str | Path, args: list[str] = ()) -> str:
    """Parse `-c config args...` with the run CLI's parser; a refusal raises ConfigError naming the key.
    Returns the resolved config as `--print_config` writes it."""
    from contrastlab.platform.cli import ContrastlabCLI

    class ParseOnly(ContrastlabCLI):
        def _set_seed(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = ParseOnly(run=False, args=["-c", str(config), *args])
    return cli.parser.dump(cli.config, skip_none=False, skip_validation=True)
