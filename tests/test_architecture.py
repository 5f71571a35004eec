"""core knows nothing of front ends: no textual, plotly, or rich rendering at import."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import treesynth.core

ROOT = Path(__file__).resolve().parents[1]


def test_importing_every_core_module_loads_no_front_end():
    mods = [f"treesynth.core.{m.name}" for m in pkgutil.iter_modules(treesynth.core.__path__)]
    assert "treesynth.core.engine" in mods and "treesynth.core.cli" in mods
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + (
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'plotly', 'rich') "
        "or m.startswith(('treesynth.tui', 'treesynth.analytics')))\nprint(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_core_source_imports_a_front_end_even_lazily():
    """Static check: textual, plotly, tui and analytics appear in no import of core/, not even inside functions."""
    import ast

    banned = ("textual", "plotly", "treesynth.tui", "treesynth.analytics", "tui", "analytics")
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in banned[:2] or name.startswith(banned[2:4]) or name in banned[4:]:
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
    assert offenders == []
