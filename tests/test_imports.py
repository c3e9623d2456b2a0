"""Who may import whom: `sweeps` goes through `platform`, never the other way at import time."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contrastlab"


def module_level_imports(path: Path) -> set[str]:
    """Modules a file imports at import time (top level, not inside functions)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_platform_does_not_import_sweeps_at_module_level():
    offenders = {
        path.name: sorted(m for m in module_level_imports(path) if m.startswith("contrastlab.sweeps"))
        for path in (PACKAGE / "platform").glob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_lower_layers_do_not_import_platform_or_sweeps():
    for layer in ("modules", "datamodules", "augment", "evaluation"):
        for path in (PACKAGE / layer).glob("*.py"):
            upper = ("contrastlab.platform", "contrastlab.sweeps")
            bad = [m for m in module_level_imports(path) if m.startswith(upper)]
            assert not bad, f"{layer}/{path.name} imports {bad}"


def test_the_run_cli_loads_without_sweeps():
    code = "import sys, contrastlab.platform.cli; print(sorted(m for m in sys.modules if 'contrastlab.sweeps' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sweep_workers_load_without_lightning():
    """A spawned sweep worker imports this module only; it starts no training, so it must not pay for Lightning and
    torch (seconds of CPU per worker)."""
    code = "import sys, contrastlab.sweeps.workers; print(sorted({'lightning', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
