"""What the thin CLI calls: the read-only run view (core/reader.py), ``export_run`` (core/exporting.py),
``prepare_baseline`` (core/baseline.py) and the estimate's lines (core/estimate.py), on run directories
written by hand (no model, no transport)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from treesynth.core.baseline import prepare_baseline
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError, RunDirError
from treesynth.core.estimate import balance_estimate_lines, estimate_lines
from treesynth.core.exporting import export_run
from treesynth.core.reader import RunReader
from treesynth.core.rundir import CONFIG, DATASET, EXPORT_SOURCE, METRICS, REJECTED, SAMPLES, STATE, VERDICTS
from treesynth.core.store import RUN_FORMAT, RunStore


def _lines(path: Path, records: list[dict], torn: bytes = b"") -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + torn)


def _row(i: int) -> dict:
    return {"id": f"0.{i}/0/0", "leaf_id": f"0.{i}", "path": [{"dimension": "d", "value": f"v{i}"}], "slot": 0,
            "question": f"q{i}", "answer": f"a{i}"}


def make_run(root: Path, rows: int = 4, size: int = 3, status: str = "stopped", **flags) -> Path:
    cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "size": size, **flags})
    root.mkdir(parents=True)
    (root / CONFIG).write_bytes(orjson.dumps({"format": RUN_FORMAT, "config": cfg.redacted()}))
    (root / STATE).write_bytes(orjson.dumps({"status": status, "usage": {}}))
    _lines(root / SAMPLES, [_row(i) for i in range(rows)], torn=b'{"id": "torn')
    return root


# ---------------------------------------------------------------- RunReader
def test_reader_rows_as_the_dataset_has_them(tmp_path):
    run = make_run(tmp_path / "r", rows=4)
    _lines(run / VERDICTS, [{"id": "0.0/0/0", "pass": True, "judge": "m"}, {"id": "0.1/0/0", "pass": False}], torn=b'{"id": "0.2/0/0", "pa')
    _lines(run / REJECTED, [{"gate": "validator"}, {"gate": "near_duplicate"}])
    reader = RunReader(run)
    rows = list(reader.iter_samples())
    assert [r["id"] for r in rows] == ["0.0/0/0", "0.2/0/0", "0.3/0/0"]  # the failed row left out, the torn line skipped
    assert rows[0]["judge"] == {"pass": True, "judge": "m"} and "judge" not in rows[1]
    assert [r["id"] for r in reader.iter_samples(judged_only=True)] == ["0.0/0/0"]
    assert reader.verdicts() == {"0.0/0/0": True, "0.1/0/0": False}
    assert [r["gate"] for r in reader.rejected()] == ["validator", "near_duplicate"]
    assert (run / VERDICTS).read_bytes().endswith(b'"pa')  # read, never repaired
    assert reader.report_metrics() == {}
    (run / METRICS).write_bytes(orjson.dumps({"datasets": [{"metrics": {"vendi_score": {"value": 3.0}}}]}))
    assert reader.report_metrics() == {"vendi_score": {"value": 3.0}}
    assert reader.saved_config()["size"] == 3


def test_reader_open_and_saved_config_say_what_is_wrong(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        RunReader.open(tmp_path / "nope")
    run = make_run(tmp_path / "r")
    (run / CONFIG).write_bytes(b"{}")
    assert RunReader.open(run).config() == {}
    with pytest.raises(RunDirError, match="is corrupt: config.json is not a"):
        RunReader.open(run).saved_config()


def test_reader_sees_a_writer_without_taking_its_lock(tmp_path):
    run = make_run(tmp_path / "r")
    reader = RunReader(run)
    assert not reader.in_use() and not (run / ".lock").exists()  # nothing created
    store = RunStore.open(run)
    try:
        assert reader.in_use()
    finally:
        store.close()
    assert not reader.in_use()
    RunStore.open(run).close()  # the probe left no lock behind


# ---------------------------------------------------------------- export_run
def test_export_of_an_unfinished_run_notes_it_and_keeps_its_size(tmp_path):
    run = make_run(tmp_path / "r", rows=4, size=3)
    notes: list[str] = []
    done = export_run(run, note=notes.append)
    assert done.path == run / "export.jsonl" and done.url is None
    assert notes == ["the run is stopped; exporting the 4 samples so far"]
    rows = [orjson.loads(line) for line in done.path.read_bytes().splitlines()]
    assert [r["id"] for r in rows] == ["0.0/0/0", "0.1/0/0", "0.2/0/0"] and "slot" not in rows[0]
    assert (run / EXPORT_SOURCE).is_file()


def test_export_reads_the_dataset_and_writes_training_records(tmp_path):
    run = make_run(tmp_path / "r", status="complete")
    _lines(run / DATASET, [_row(7), _row(8)])
    notes: list[str] = []
    chat = export_run(run, "chat", tmp_path / "c.jsonl", system="Be brief.", note=notes.append)
    recs = [orjson.loads(line) for line in chat.path.read_bytes().splitlines()]
    assert notes == [] and len(recs) == 2
    assert recs[0]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q7"},
                                   {"role": "assistant", "content": "a7"}]
    alpaca = export_run(run, "alpaca", prompt_fields=("answer",), response_fields=("question",))
    assert alpaca.path == run / "export.alpaca.jsonl"
    assert orjson.loads(alpaca.path.read_bytes().splitlines()[0]) == {"instruction": "a7", "input": "", "output": "q7"}
    with pytest.raises(ConfigError, match=r"unknown field\(s\) nope"):
        export_run(run, "chat", tmp_path / "x", prompt_fields=("nope",))


@pytest.mark.parametrize(("kw", "msg"), [
    ({"fmt": "jsonl", "push_to_hub_repo": "me/data"}, "--push-to-hub goes with --format hf"),
    ({"fmt": "parquet", "system": "x"}, "go with --format chat or alpaca"),
    ({"fmt": "jsonl", "prompt_fields": ()}, "go with --format chat or alpaca"),
    ({"fmt": "csv"}, "unknown export format 'csv'"),
])
def test_export_refuses_options_that_do_not_fit_before_reading(tmp_path, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        export_run(tmp_path / "not-even-there", out=tmp_path / "x", **kw)
    assert not (tmp_path / "x").exists()


def test_export_never_writes_over_an_hf_directory(tmp_path):
    run = make_run(tmp_path / "r")
    (tmp_path / "hf").mkdir()
    with pytest.raises(RunDirError, match="already exists"):
        export_run(run, "hf", tmp_path / "hf")


# ---------------------------------------------------------------- prepare_baseline
def test_prepare_baseline_new_then_resumed(tmp_path):
    run = make_run(tmp_path / "r", rows=4, size=3, temperature=0.5)
    plan = prepare_baseline(run, {"budget": 2.0, "concurrency": None})
    assert plan.out == run / "baseline" and plan.rows == 3 and plan.overrides == {"budget": 2.0}
    assert plan.config is not None and (plan.config.depth, plan.config.size, plan.config.temperature, plan.config.budget) == (0, 3, 0.5, 2.0)
    (plan.out).mkdir()
    (plan.out / CONFIG).write_bytes((run / CONFIG).read_bytes())
    again = prepare_baseline(run, {"budget": None, "api_base": "http://x/v1"})
    assert again.config is None and again.out == run / "baseline" and again.overrides == {"api_base": "http://x/v1"}


def test_prepare_baseline_refusals(tmp_path):
    with pytest.raises(ConfigError, match="is not a treesynth run directory"):
        prepare_baseline(tmp_path / "nope", {})
    empty = make_run(tmp_path / "e", rows=0)
    with pytest.raises(ConfigError, match="no rows yet"):
        prepare_baseline(empty, {})
    run = make_run(tmp_path / "r")
    store = RunStore.open(run)
    try:
        with pytest.raises(RunDirError, match="is in use by another treesynth process"):
            prepare_baseline(run, {})
    finally:
        store.close()


# ---------------------------------------------------------------- estimate lines
def test_estimate_lines():
    cfg = build_config(flags={"task": "t", "size": 200, "depth": 2, "fields": "question,answer", "judge": True})
    lines = estimate_lines(cfg)
    assert [line.split(":")[0] for line in lines] == ["task", "model", "tree", "calls", "tokens", "cost"]
    assert lines[0].endswith(" t") and "judging them" in lines[3] and "generating 200 samples" in lines[3]
    bal = balance_estimate_lines(cfg, 1000, "data.jsonl", "llm", 25, target_per_leaf=10)
    assert bal[0] == "balance:        1,000 rows of data.jsonl (llm routing)"
    assert [line.split(":")[0] for line in bal[1:]] == ["tree", "calls", "tokens", "cost"] and "growing and routing" in bal[2]
