"""Configs composed from others: a config file's `base:` names the files it starts from (a dataset's recipe, a
method's settings), read in order beneath the file's own keys through LightningCLI's repeated `-c`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from jsonargparse import Namespace

from contrastlab.errors import ConfigError

# A config starts from other files: `base: configs/recipes/digits.yaml` or a list, read in order under the file.
BASE_ENTRY = re.compile(r"^base:.*\n(?:(?:[ \t]+|- ).*\n)*", re.MULTILINE)
CHECKOUT = Path(__file__).resolve().parents[2]  # where configs/ lies in a checkout of contrastlab


def expand_bases(args: list[str]) -> list[str]:
    """`-c FILE` as `-c BASE ... -c FILE`: the files FILE's `base:` names (theirs first) come before it.

    A base is a path, looked up from the working directory, then from FILE's folder and its parents, then from
    this checkout of contrastlab, so `base: configs/recipes/digits.yaml` works from anywhere, as a sweep's does.
    Expanded arguments stay as they are (LightningCLI's verb parser is given them after the main parser): bases
    that already come just before FILE are not read twice.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "--config") and i + 1 < len(args):
            name, flag, i = args[i + 1], arg, i + 2
        elif arg.startswith("--config="):
            name, flag, i = arg.split("=", 1)[1], "--config=", i + 1
        else:
            out.append(arg)
            i += 1
            continue
        bases = [x for base in _bases(Path(name), ()) for x in _given(flag, str(base))]
        if not bases or out[-len(bases) :] != bases:
            out += bases
        out += _given(flag, name)
    return out


def _given(flag: str, file: str) -> list[str]:
    """`-c FILE` or `--config=FILE`, as the user wrote it."""
    return [flag + file] if flag.endswith("=") else [flag, file]


def _bases(path: Path, seen: tuple[Path, ...]) -> list[Path]:
    """The files `path` starts from, in reading order (a base's own bases before it)."""
    if not _is_file(path):
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
    found = find_config(name, config)
    if found is None:
        raise ConfigError(f"{config}: base: {name} not found (looked in {places_looked(config)})")
    return found


def places_looked(beside: Path) -> str:
    """Where `find_config` looks, in words, for an error that a config was not found."""
    return f"the working directory, {beside.resolve().parent} and above, and {CHECKOUT}"


def find_config(name: str, beside: Path) -> Path | None:
    """The config file `name` as a `base:` in the file `beside` means it: from the working directory, then from
    `beside`'s folder and its parents, then from this checkout of contrastlab; None when none holds it."""
    folder = beside.resolve().parent
    for candidate in (Path(name), *(d / name for d in (folder, *folder.parents)), CHECKOUT / name):
        if candidate.is_file():
            return candidate
    return None


def config_files(args: list[str]) -> list[Path]:
    """The files `-c`/`--config` name in (expanded) arguments, in reading order; YAML given inline is left out."""
    named = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in ("-c", "--config")]
    named += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    return [Path(name) for name in named if _is_file(Path(name))]


def dropped_dict_keys(files: list[Path], parsed: Namespace) -> list[str]:
    """One line for each dict-valued option whose keys a config file gives and the resolved config lacks.

    jsonargparse merges nested options (trainer:, a class's init_args) key by key, but a dict-typed one
    (`backbone_kwargs`) given again, by a later file or an override, replaces the earlier dict whole: a config
    that sets `backbone_kwargs: {depth: 4}` over a base's `{hidden_dims: 64, depth: 10}` builds the net with
    its default width. Nothing else says so, and the run would differ from what both files read as.
    """
    root = parsed.get(parsed.get("subcommand")) if parsed.get("subcommand") else parsed
    notes: list[str] = []
    for path in files:
        given = yaml.safe_load(path.read_text()) or {}
        if isinstance(given, dict) and isinstance(root, Namespace):
            given.pop("base", None)
            notes += _dropped(given, root, path, ())
    return notes


def _dropped(given: dict, resolved: Namespace, path: Path, keys: tuple[str, ...]) -> list[str]:
    notes = []
    for key, value in given.items():
        final = resolved.get(key) if isinstance(key, str) else None
        if not isinstance(value, dict) or final is None:
            continue
        name = ".".join((*keys, key))
        if isinstance(final, Namespace):
            notes += _dropped(value, final, path, (*keys, key))
        elif isinstance(final, dict) and (lost := [str(k) for k in value if k not in final]):
            notes.append(
                f"{path}: {name}: {', '.join(lost)} dropped, because a later file or override gives {name} whole "
                "(a dict is replaced, not merged); restate them there to keep them"
            )
    return notes


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a config given as YAML text, too long for a file name
        return False
