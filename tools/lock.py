"""Write the committed lock from a fresh virtual environment: `make lock` runs this.

    python tools/lock.py VENV

VENV holds torch, torchvision and `contrastlab[dev]`, installed from pyproject's ranges by `make lock`. The lock
is that environment's `pip freeze`: every package, each at one version. The Hugging Face extra is resolved on top
of it, constrained by it, and what it adds is written to requirements/hf.txt (`make` installs those beside the
venv, in .venv/hf: see the Makefile). Everything `make` and `.ci/run` install comes from these two files.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
HF_LOCK = REPO / "requirements" / "hf.txt"
HF_SPEC = "transformers>=5.0"


def header(what: str) -> str:
    today = datetime.date.today().isoformat()
    return f"# {what}\n# Written by `make lock` (tools/lock.py) on {today}; do not edit by hand.\n"


def freeze(python: Path) -> list[str]:
    out = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return sorted((line for line in out.splitlines() if "==" in line), key=str.lower)


def hf_additions(python: Path) -> list[str]:
    """What the hf extra adds to the locked environment, each at the version pip resolves under the lock."""
    report = REPO / "build" / "hf-report.json"
    report.parent.mkdir(exist_ok=True)
    subprocess.run(
        [python, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
         "--report", report, "-c", LOCK, HF_SPEC],
        check=True,
    )  # fmt: skip
    installs = json.loads(report.read_text())["install"]
    return sorted((f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installs), key=str.lower)


def main(venv: str) -> None:
    python = Path(venv).resolve() / "bin" / "python"
    LOCK.parent.mkdir(exist_ok=True)
    what = "Every package of the test environment: torch, torchvision, contrastlab's dependencies and the dev extra."
    LOCK.write_text(header(what) + "\n".join(freeze(python)) + "\n")
    what = "The Hugging Face text tower's packages, installed into .venv/hf, beside the environment of lock.txt."
    HF_LOCK.write_text(header(what) + "\n".join(hf_additions(python)) + "\n")
    print(f"wrote {LOCK.relative_to(REPO)} and {HF_LOCK.relative_to(REPO)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
