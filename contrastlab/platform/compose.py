"""Configs composed from others: a config file's `base:` names the files it starts from (a dataset's recipe, a
method's settings), read in order beneath the file's own keys through LightningCLI's repeated `-c`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from contrastlab.errors import ConfigError

# A config starts from other files: `base: configs/recipes/digits.yaml` or a list, read in order under the file.
BASE_ENTRY = re.compile(r"^base:.*\n(?:(?:[ \t]+|- ).*\n)*", re.MULTILINE)
CHECKOUT = Path(__file__).resolve().parents[2]  # where configs/ lies in a checkout of contrastlab


def expand_bases(args: list[str]) -> list[str]:
    """`-c FILE` as `-c BASE ... -c FILE`: the files FILE's `base:` names (theirs first) come before it.

    A base is a path, looked up from the working directory, then from FILE's folder and its parents, then from
    this checkout of contrastlab, so `base: configs/recipes/digits.yaml` works from anywhere, as a sweep's does.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "--config") and i + 1 < len(args):
            out += [x for base in _bases(Path(args[i + 1]), ()) for x in (arg, str(base))] + [arg, args[i + 1]]
            i += 2
            continue
        if arg.startswith("--config="):
            out += [f"--config={base}" for base in _bases(Path(arg.split("=", 1)[1]), ())]
        out.append(arg)
        i += 1
    return out


def _bases(path: Path, seen: tuple[Path, ...]) -> list[Path]:
    """The files `path` starts from, in reading order (a base's own bases before it)."""
    try:
        is_file = path.is_file()
    except OSError:  # a config given as YAML text, too long for a file name
        is_file = False
    if not is_file:
        return []  # jsonargparse reports a missing file, or reads a config given as a string
    text = path.read_text()
    names = (yaml.safe_load(text) or {}).get("base") if BASE_ENTRY.search(text) else None
    if names is None:
        return []
    if seen and path.resolve() in seen:
        raise ConfigError(f"{path}: base: it starts from itself (through {', '.join(map(str, seen))})")
    out: list[Path] = []
    for name in [names] if isinstance(names, str) else names:
        if not isinstance(name, str):
            raise ConfigError(f"{path}: base: expected a config path or a list of them, got {name!r}")
        base = _find_base(name, path)
        out += [*_bases(base, (*seen, path.resolve())), base]
    return out


def _find_base(name: str, config: Path) -> Path:
    folder = config.resolve().parent
    for candidate in (Path(name), *(d / name for d in (folder, *folder.parents)), CHECKOUT / name):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{config}: base: {name} not found (looked in the working directory, {folder} and above)")
