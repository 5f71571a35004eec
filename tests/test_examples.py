"""The README's Python examples: the README shows the example files' code verbatim, and the async example
runs for real on the embedded model. The quickstart and its continuation run in a Jupyter kernel on the
embedded model (tests/test_notebook.py); the quickstart as a script against llama-cpp-python's server
(tests/test_real_server.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env, read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    section = section[: section.index("\n## ", 5)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_shows_the_example_files_verbatim():
    blocks = readme_python_blocks()
    assert len(blocks) == 3
    assert blocks[0] == (ROOT / "examples" / "quickstart.py").read_text()
    assert len(blocks[0].strip().splitlines()) <= 5
    assert blocks[2] == (ROOT / "examples" / "async_run.py").read_text().split('"""', 2)[2].lstrip("\n")


def _one_run(cwd: Path, exclude: tuple[str, ...] = ()) -> Path:
    runs = [d for d in (cwd / "runs").iterdir() if d.name not in exclude and not d.name.startswith("balance-")]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_the_async_example_on_the_embedded_model(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "async_run.py")], capture_output=True, text=True, cwd=tmp_path,
                       env=cli_env(), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "complete 6 rows" in r.stdout and "shape: (6," in r.stdout
    assert len(read_jsonl(_one_run(tmp_path) / "dataset.jsonl")) == 6
