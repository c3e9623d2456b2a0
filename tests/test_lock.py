"""The environment is the lock: every package pinned in requirements/ is installed at its pinned version, and the
test environment holds nothing the lock does not name. Fails, naming the packages, after a hand install or when
the lock went stale (`make lock` rewrites it; `rm .venv/.installed && make` reinstalls from it)."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
HF_LOCK = REPO / "requirements" / "hf.txt"
HF_TARGET = REPO / ".venv" / "hf"
# not pinned by `pip freeze`: the installer's own tools, and the project itself (installed editable)
UNPINNED = {"pip", "setuptools", "wheel", "contrastlab"}


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def installed(path: list[str] | None = None) -> dict[str, str]:
    """Name -> version of the distributions on `path` (default sys.path); the first on the path wins, as imports do."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(**({"path": path} if path is not None else {})):
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    return found


def drift(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """One line per pinned package that is missing or at another version."""
    lines = []
    for name, version in sorted(pins.items()):
        if name not in have:
            lines.append(f"{name}: locked {version}, not installed")
        elif have[name] != version:
            lines.append(f"{name}: locked {version}, installed {have[name]}")
    return lines


def test_every_locked_package_is_installed_at_its_version():
    assert not drift(read_lock(LOCK), installed()), "\n".join(drift(read_lock(LOCK), installed()))


def test_nothing_is_installed_that_the_lock_does_not_name():
    extra = sorted(set(installed()) - set(read_lock(LOCK)) - UNPINNED)
    assert not extra, f"installed but not in {LOCK.name} (a hand install, or run `make lock`): {extra}"


def test_the_hugging_face_packages_beside_the_venv_are_the_locked_ones():
    assert HF_TARGET.is_dir(), "make installs requirements/hf.txt into .venv/hf"
    have = installed([str(HF_TARGET)])
    pins = read_lock(HF_LOCK)
    assert "transformers" in pins and not drift(pins, have), "\n".join(drift(pins, have))
    assert not set(have) - set(pins), f"in .venv/hf but not in {HF_LOCK.name}: {sorted(set(have) - set(pins))}"


def test_a_package_at_another_version_is_named(tmp_path):
    """A fake metadata entry ahead of the real ones on the path, as a hand install of another torch would be."""
    locked = read_lock(LOCK)
    fake = tmp_path / "torch-0.0.1.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 0.0.1\n")
    have = installed([str(tmp_path), *sys.path])
    assert drift(locked, have) == [f"torch: locked {locked['torch']}, installed 0.0.1"]
    del have["numpy"]
    assert f"numpy: locked {locked['numpy']}, not installed" in drift(locked, have)
