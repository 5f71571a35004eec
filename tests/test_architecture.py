"""The layers point one way: cli > tui > lib (the Python API) > analytics > core. lint-imports (pyproject's contracts) checks
import statements; these tests also catch what it cannot see: imports by name at run time
(importlib, __import__) and what importing a package actually loads."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import treesynth.core

ROOT = Path(__file__).resolve().parents[1]
FRONT_ENDS = ("textual", "plotly", "rich")
# package folder -> the treesynth packages it must not import (statically, lazily or by name)
FORBIDDEN = {
    "core": ("treesynth.cli", "treesynth.tui", "treesynth.analytics", "treesynth.lib"),
    "analytics": ("treesynth.cli", "treesynth.tui", "treesynth.lib"),
    "api/lib": ("treesynth.cli", "treesynth.tui"),
    "tui": ("treesynth.cli",),
}


def _core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(treesynth.core.__path__, "treesynth.core.")]


def test_importing_every_core_module_loads_no_front_end():
    mods = _core_modules()
    assert "treesynth.core.embeddings" in mods and len(mods) > 20
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + (
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FRONT_ENDS!r} "
        "or m.startswith(('treesynth.tui', 'treesynth.analytics', 'treesynth.cli')))\nprint(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file names in an import, inside functions too, and every string literal handed to
    importlib.import_module, importlib.util.find_spec or __import__ (an import by name)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "find_spec", "__import__"):
                out += [(node.lineno, a.value) for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return out


def test_no_layer_imports_one_above_it_even_lazily_or_by_name():
    offenders = []
    for folder, banned in FORBIDDEN.items():
        for path in (ROOT / folder).rglob("*.py"):
            for line, name in _imports(path):
                if name.startswith(banned) or (folder == "core" and name.split(".")[0] in FRONT_ENDS):
                    offenders.append(f"{folder}/{path.relative_to(ROOT / folder)}:{line} imports {name}")
    assert offenders == []


def test_the_checker_sees_imports_by_name(tmp_path):
    """The static check above is not vacuous: it finds an importlib call naming a front end."""
    p = tmp_path / "m.py"
    p.write_text("import importlib\ndef f():\n    return importlib.import_module('treesynth.tui.app')\n")
    assert (3, "treesynth.tui.app") in _imports(p)


def test_import_linter_contracts_hold():
    """The contracts in pyproject.toml (layers, core independent of textual/plotly/rich) are kept."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    r = subprocess.run([sys.executable, str(ROOT / ".ci" / "lint_imports.py"), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert f"{len(contracts)} kept, 0 broken" in r.stdout, r.stdout[-2000:]


def test_every_package_folder_ships_in_the_wheel():
    """pyproject lists packages explicitly (the folders map to treesynth.*): a new subpackage must be listed."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"treesynth.assets"}
    for folder in ("cli", "core", "tui", "analytics"):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join(("treesynth", folder, *rel)))
    for init in (ROOT / "api").rglob("__init__.py"):  # api/ is the top-level package itself
        found.add(".".join(("treesynth", *init.parent.relative_to(ROOT / "api").parts)))
    assert found == listed


def test_front_ends_never_tell_modes_apart():
    """Every run is a ``Run`` in some mode, held by one handle protocol (core/handle.py): no front end asks
    hasattr(run, ...), compares a run's kind, or looks for a mode's files (balance.json) to decide what to do;
    what differs is the mode's (its command, summary rows, refusals)."""
    offenders = []
    for folder in ("cli", "tui"):
        for path in (ROOT / folder).rglob("*.py"):
            where = f"{folder}/{path.relative_to(ROOT / folder)}"
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr" and node.args:
                    if "run" in ast.unparse(node.args[0]).lower():
                        offenders.append(f"{where}:{node.lineno}")
                if isinstance(node, ast.Compare) and any(isinstance(x, ast.Attribute) and x.attr == "kind" for x in (node.left, *node.comparators)):
                    if "run" in ast.unparse(node).lower():
                        offenders.append(f"{where}:{node.lineno} compares a run's kind")
                if isinstance(node, ast.Name) and node.id in ("BALANCE", "is_balance_run", "RunKind"):
                    offenders.append(f"{where}:{node.lineno} uses {node.id}")
                if isinstance(node, ast.Attribute) and node.attr in ("is_balance", "is_balance_run"):
                    offenders.append(f"{where}:{node.lineno} uses .{node.attr}")
    assert offenders == []


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` (whose source is ``folder``) it imports when it runs: at module
    level and inside functions alike; what ``if TYPE_CHECKING:`` imports is left out (its ``else`` is not).
    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``."""
    mods: dict[str, Path] = {}
    for f in folder.rglob("*.py"):
        parts = f.relative_to(folder).with_suffix("").parts
        mods[".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))] = f
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        tree = ast.parse(f.read_text(), filename=str(f))
        typing_only = {
            id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
            for stmt in node.body for n in ast.walk(stmt)
        }
        here = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:  # import a.b.c of a package: its deepest module
                    t = t.rpartition(".")[0]
                if t and t != m:
                    graph[m].add(t)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_core_has_no_import_circle_at_run_time():
    """No module of the core imports itself back through others when it runs, lazily inside a function
    included: each piece (wire format, litellm loading, presets, transport choice, the judge's helpers)
    sits below everything that uses it. pyproject's core layers contract orders the packages; this also
    holds inside a layer, where siblings may import each other."""
    graph = runtime_import_graph(ROOT / "core", "treesynth.core")
    assert "treesynth.core.llm.transports.openai_http" in graph and len(graph) > 50
    assert "treesynth.core.llm.wire" in graph["treesynth.core.llm.batch.openai_api"]  # lazy and relative imports are seen
    assert import_circles(graph) == []


def test_the_circle_check_sees_lazy_imports_and_skips_typing_only_ones(tmp_path):
    """The check above is not vacuous: a circle closed by an import inside a function is found, one
    closed only under ``if TYPE_CHECKING:`` is not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n    return x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nfrom . import a\nif TYPE_CHECKING:\n    from .d import y\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = runtime_import_graph(pkg, "pkg")
    assert graph["pkg.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.c"}
    assert import_circles(graph) == [["pkg.a", "pkg.sub.b"]]

