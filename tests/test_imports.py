"""Who may import whom: each layer imports only the layers before it, and no modules import each other in a circle.

The checker reads every module under contrastlab/ (no import runs) and collects every import in it: at module
level and inside functions and methods, `import x` and `from x import y`, relative ones resolved. `from pkg import
name` counts as importing `pkg.name` when that is a module, else `pkg`. A submodule running its package's
`__init__` is not counted as an import of the package; an explicit import of a package is.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contrastlab"

# (module or package, layer): a module imports only modules of its own layer or of a lower one. The longest name
# that a module is, or lies inside, gives its layer; the package's own __init__ is layer 0 by its exact name only.
LAYERS = (
    ("contrastlab", 0),
    ("contrastlab.errors", 0),
    ("contrastlab.compat", 0),
    ("contrastlab.contract", 1),  # DataInfo, ViewPipeline, the batch keys: what the layers above agree on
    ("contrastlab.augment", 2),
    ("contrastlab.datamodules", 2),
    ("contrastlab.modules.nets", 3),
    ("contrastlab.modules.losses", 3),
    ("contrastlab.metrics", 3),
    ("contrastlab.modules", 4),  # the methods, one file each
    ("contrastlab.modules.core", 4),  # what the methods share
    ("contrastlab.evaluation", 5),
    ("contrastlab.platform", 6),
    ("contrastlab.sweeps", 7),
    ("contrastlab.eval", 7),
    ("contrastlab.cli", 8),
    ("contrastlab.__main__", 8),
)
# Within one layer: (importer, imported) entries of the table above that must still not meet.
FORBIDDEN = {
    ("contrastlab.augment", "contrastlab.datamodules"): "an augmentation knows no files",
    ("contrastlab.modules.core", "contrastlab.modules"): "the core knows no method",
}


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the package under `root` (the folder holding contrastlab/), by dotted name."""
    modules = {}
    for path in sorted((root / "contrastlab").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module `name` (at `path`) imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if (m == "contrastlab" or m.startswith("contrastlab.")) and m != name}


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, Path]]:
    files = module_files(root)
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}, files


def owner(module: str, names) -> str | None:
    """The longest of `names` that `module` is or lies inside ("contrastlab" itself only by its exact name)."""
    inside = [n for n in names if module == n or (n != "contrastlab" and module.startswith(n + "."))]
    return max(inside, key=len, default=None)


def layer_of(module: str) -> int | None:
    key = owner(module, dict(LAYERS))
    return None if key is None else dict(LAYERS)[key]


def upward_imports(graph: dict[str, set[str]], files: dict[str, Path], root: Path) -> list[str]:
    """'file -> module (why)' for every import of a higher layer, or of a package its layer forbids."""
    bad = []
    table = dict(LAYERS)
    for module, targets in sorted(graph.items()):
        where = files[module].relative_to(root)
        for target in sorted(targets):
            here, there = layer_of(module), layer_of(target)
            if here is None or there is None:
                bad.append(f"{where} -> {target} (not in the layer table)")
            elif there > here:
                bad.append(f"{where} -> {target} (layer {here} imports layer {there})")
            else:
                reason = FORBIDDEN.get((owner(module, table), owner(target, table)))
                if reason:
                    bad.append(f"{where} -> {target} ({reason})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_the_layer_table():
    graph, _ = import_graph(PACKAGE.parent)
    assert not [m for m in graph if layer_of(m) is None]


def test_every_import_goes_down_the_layers():
    graph, files = import_graph(PACKAGE.parent)
    assert not upward_imports(graph, files, PACKAGE.parent)


def test_no_modules_import_each_other_in_a_circle():
    graph, _ = import_graph(PACKAGE.parent)
    assert not cycles(graph)


def test_the_checker_sees_a_planted_upward_import_and_a_cycle(tmp_path):
    """The checks above can fail: an import inside a method, relative or absolute, is found and named."""
    package = tmp_path / "contrastlab"
    files = {
        "__init__.py": "",
        "errors.py": "",
        "modules/__init__.py": "",
        "modules/nets/__init__.py": "",
        "modules/nets/vision.py": "class Net:\n    def build(self):\n        from ...platform import cli\n",
        "modules/nets/audio.py": "from contrastlab.modules.nets import vision\n",
        "modules/core/__init__.py": "",
        "modules/core/base.py": "from .. import simclr\n",
        "modules/simclr.py": "from contrastlab.modules.core.base import ContrastiveModule\n",
        "augment/__init__.py": "",
        "augment/vision.py": "import contrastlab.errors\nfrom contrastlab.datamodules import base\n",
        "datamodules/__init__.py": "",
        "datamodules/base.py": "from contrastlab.datamodules import vision\n",
        "datamodules/vision.py": "def f():\n    from contrastlab.datamodules.base import x\n",
        "platform/__init__.py": "",
        "platform/cli.py": "from contrastlab.errors import ConfigError\n",
        "stray.py": "",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph, paths = import_graph(tmp_path)
    assert graph["contrastlab.modules.nets.vision"] == {"contrastlab.platform.cli"}
    assert graph["contrastlab.modules.nets.audio"] == {"contrastlab.modules.nets.vision"}
    assert graph["contrastlab.augment.vision"] == {"contrastlab.errors", "contrastlab.datamodules.base"}
    assert upward_imports(graph, paths, tmp_path) == [
        "contrastlab/augment/vision.py -> contrastlab.datamodules.base (an augmentation knows no files)",
        "contrastlab/modules/core/base.py -> contrastlab.modules.simclr (the core knows no method)",
        "contrastlab/modules/nets/vision.py -> contrastlab.platform.cli (layer 3 imports layer 6)",
    ]
    assert cycles(graph) == [
        ["contrastlab.datamodules.base", "contrastlab.datamodules.vision"],
        ["contrastlab.modules.core.base", "contrastlab.modules.simclr"],
    ]
    assert [m for m in graph if layer_of(m) is None] == ["contrastlab.stray"]


def test_the_run_cli_loads_without_sweeps_or_eval():
    code = (
        "import sys, contrastlab.platform.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('contrastlab.sweeps', 'contrastlab.eval.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sweep_workers_load_without_lightning():
    """A spawned sweep worker imports this module only; it starts no training, so it must not pay for Lightning and
    torch (seconds of CPU per worker)."""
    code = "import sys, contrastlab.sweeps.workers; print(sorted({'lightning', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
