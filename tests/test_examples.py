"""The README's Python examples, run for real on the embedded model: the quickstart script (five lines:
a 20-row GSM8K-preset dataset and its tree), its continuation (resume, open, baseline, report, export,
balance) in the same process, and the async example. The README shows the files' code verbatim."""

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


def _run(code: str, cwd: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=cli_env(), timeout=timeout)


def _one_run(cwd: Path, exclude: tuple[str, ...] = ()) -> Path:
    runs = [d for d in (cwd / "runs").iterdir() if d.name not in exclude and not d.name.startswith("balance-")]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_quickstart_and_its_continuation_on_the_embedded_model(tmp_path):
    quick, more, _ = readme_python_blocks()
    r = _run(quick + more, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    out = r.stdout
    assert out.startswith("(root)") and "split by" in out  # the tree, printed
    run_dir = _one_run(tmp_path)
    rows = read_jsonl(run_dir / "dataset.jsonl")
    assert len(rows) == 20 and all(r["question"].strip() and r["answer"].strip() for r in rows)
    assert len({tuple((p["dimension"], p["value"]) for p in r["path"]) for r in rows}) >= 2  # rows in more than one leaf
    assert len(read_jsonl(run_dir / "baseline" / "dataset.jsonl")) == 20
    assert (run_dir / "report.html").is_file() and (run_dir / "export.chat.jsonl").is_file()
    balanced = [d for d in (tmp_path / "runs").iterdir() if d.name.startswith("balance-")]
    assert len(balanced) == 1 and read_jsonl(balanced[0] / "balanced.jsonl")


@pytest.mark.slow
def test_the_async_example_on_the_embedded_model(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "async_run.py")], capture_output=True, text=True, cwd=tmp_path,
                       env=cli_env(), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "complete 6 rows" in r.stdout and "shape: (6," in r.stdout
    assert len(read_jsonl(_one_run(tmp_path) / "dataset.jsonl")) == 6
