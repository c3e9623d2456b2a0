"""Several `contrastlab fit` runs in one pair of DDP processes: tests/methods/test_ddp_methods.py's launcher.

    CONTRASTLAB_DDP_FITS='[["FOLDER", ["fit", "-c", ...]], ...]' python tests/methods/ddp_fits.py

Each fit is the CLI's own `main` in the folder it names, one after the other. The first fit's trainer starts the
second rank (Lightning re-runs this script with the same environment) and the gloo process group; the later fits
find both in place, so one launch and one pair of interpreters serve them all. The plan travels in the environment,
not in argv: the CLI rewrites sys.argv to its own arguments before Lightning re-runs it for the other rank.
"""

from __future__ import annotations

import json
import os
import sys

PLAN = "CONTRASTLAB_DDP_FITS"


def main() -> None:
    from contrastlab.cli import main as contrastlab

    for folder, args in json.loads(os.environ[PLAN]):
        os.chdir(folder)
        contrastlab(args)
    sys.exit(0)


if __name__ == "__main__":
    main()
