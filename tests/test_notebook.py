"""The quickstart in a real Jupyter kernel (nbclient starts one, as a notebook server would): the kernel's
event loop is running while the cell calls ``treesynth.generate``, which must not raise asyncio errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _execute(cells: list[str], cwd: Path, timeout: int) -> list:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb.cells


def _text(cell) -> str:
    """What the cell printed (stdout; the progress bar goes to stderr)."""
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")


def test_generate_in_a_kernel_against_a_server(tmp_path, stub):
    cells = _execute([
        "import asyncio\nasyncio.get_running_loop()  # the kernel's loop is running",
        "import treesynth\n"
        f"ds = treesynth.generate('math word problems', size=8, depth=2, model='openai/stub-model', api_base={stub.url!r},"
        " fields=['question', 'answer'], out='nb-run')\nprint(ds.tree)\nprint(len(ds), ds.status)",
    ], tmp_path, timeout=300)
    out = _text(cells[1])
    assert "(root)" in out and "8 complete" in out
    assert len(read_jsonl(tmp_path / "nb-run" / "dataset.jsonl")) == 8


@pytest.mark.slow
def test_the_readme_quickstart_and_its_continuation_in_a_kernel_on_the_embedded_model(tmp_path):
    """The README's five lines (examples/quickstart.py) as one cell, its continuation (resume, extend, open,
    baseline, report, export, balance) as the next: a 20-row GSM8K-preset dataset and its tree, extended (to 22
    rows here; 50 in the README), on the embedded model."""
    from tests.test_examples import readme_python_blocks

    quick, more, _ = readme_python_blocks()
    assert quick == (ROOT / "examples" / "quickstart.py").read_text()
    assert "extend(ds.run_dir, size=50)" in more
    more = more.replace("size=50", "size=22")  # the continuation scaled down (its baseline has the run's size): a shorter suite
    cells = _execute([quick, more], tmp_path, timeout=1800)
    out = _text(cells[0])
    assert out.startswith("(root)") and "split by" in out  # the tree, printed
    runs = [d for d in (tmp_path / "runs").iterdir() if not d.name.startswith("balance-")]
    assert len(runs) == 1
    run_dir = runs[0]
    rows = read_jsonl(run_dir / "dataset.jsonl")
    assert len(rows) == 22 and all(r["question"].strip() and r["answer"].strip() for r in rows)  # 20, extended to 22
    assert len({tuple((p["dimension"], p["value"]) for p in r["path"]) for r in rows}) >= 2  # rows in more than one leaf
    assert len(read_jsonl(run_dir / "baseline" / "dataset.jsonl")) == 22  # the run's size, after the extend
    assert (run_dir / "report.html").is_file() and (run_dir / "export.chat.jsonl").is_file()
    balanced = [d for d in (tmp_path / "runs").iterdir() if d.name.startswith("balance-")]
    assert len(balanced) == 1 and read_jsonl(balanced[0] / "balanced.jsonl")
    assert "report.html" in _text(cells[1])
