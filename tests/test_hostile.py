"""Hostile input, property-based: config files, whole engine runs fed arbitrary LLM answers,
prompt rendering of untrusted values, and damaged run directories. Any input gives a result
or a clear one-line error; never a crash or a hang.

(Unit-level properties of the parsers themselves live in test_parsing.py, test_partition.py
and test_config.py.)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import ScriptedTransport
from tests.faultserver import check_run
from treesynth.core.config import RunConfig, build_config, load_config_file
from treesynth.core.errors import ConfigError, RunDirError, TreesynthError
from treesynth.core.llm import Completion, LLMRequest
from treesynth.core.run import Run

FIELDS = ("question", "answer")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


def one_line(e: BaseException) -> None:
    msg = str(e)
    assert msg and "\n" not in msg, repr(msg)


# ---------------------------------------------------------------------------
# strategies: what an LLM (or a user's file) might send
# ---------------------------------------------------------------------------

# lone surrogates and control characters are what JSON escapes can smuggle into Python strings
nasty_text = st.text(max_size=40) | st.sampled_from(
    ["", " ", "\x00", "\ud800", "a\udfffb", "{{ 7*7 }}", "{% for x in y %}", "other", "Misc.", "\u2028", "x" * 3000, "é" * 50]
)
scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | nasty_text
json_like = st.recursive(scalar, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5), max_leaves=20)

sample_like = st.dictionaries(st.sampled_from(["question", "answer", "text", "Question", ""]), json_like, max_size=3)
samples_answer = st.one_of(
    st.fixed_dictionaries({"samples": st.lists(st.one_of(sample_like, json_like), max_size=8)}),
    st.lists(sample_like, max_size=6),
    sample_like,
)
pivot_ref = st.one_of(st.integers(-3, 9), st.sampled_from(["1", "#2", " 3 ", "²", "1e3", "99999999999999999999999"]), st.floats(), st.none())
criterion_answer = st.fixed_dictionaries(
    {
        "dimension": st.one_of(st.sampled_from(["topic", "dimension 0", "Dimension 1 ", ""]), nasty_text, json_like),
        "values": st.one_of(
            json_like,
            st.lists(st.one_of(st.sampled_from(["a", "b", "A ", "other", "money", "time"]), nasty_text, json_like), max_size=8),
        ),
    }
)
assign_answer = st.one_of(
    json_like,
    st.dictionaries(st.sampled_from(["1", "2", "3", "4", "5", "6", "[1]", "x"]),
                    st.one_of(st.sampled_from(["a", "money", "time", "b"]), nasty_text, json_like, pivot_ref), max_size=8),
    st.lists(st.sampled_from(["money", "time"]), max_size=8),
)
supplement_answer = st.fixed_dictionaries(
    {
        "status": st.one_of(st.sampled_from(["none", "complete", "open_ended", "OPEN-ENDED", "partial"]), json_like),
        "values": st.one_of(json_like, st.lists(st.one_of(nasty_text, json_like), max_size=12)),
    }
)


def _dress(obj_strategy):
    """An answer as text: plain JSON, fenced, with prose around, cut short, or not JSON at all."""

    @st.composite
    def dressed(draw):
        text = json.dumps(draw(obj_strategy), allow_nan=True)
        how = draw(st.sampled_from(["plain", "fenced", "prose", "cut", "garbage"]))
        if how == "fenced":
            text = f"Here you go:\n```json\n{text}\n```\nanything else?"
        elif how == "prose":
            text = f"Sure! {{not json}} {text} [trailing"
        elif how == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        elif how == "garbage":
            text = draw(nasty_text)
        finish = draw(st.sampled_from(["stop", "stop", "length", None, "content_filter"]))
        return text, finish

    return dressed()


answers_by_step = st.fixed_dictionaries(
    {
        "pivots": st.lists(_dress(samples_answer), max_size=5),
        "criterion": st.lists(_dress(criterion_answer), max_size=5),
        "assign": st.lists(_dress(assign_answer), max_size=5),
        "supplement": st.lists(_dress(supplement_answer), max_size=4),
        "gen": st.lists(_dress(samples_answer), max_size=12),
    }
)


@dataclass
class HostileTransport:
    """Serves the drawn answers first (per step), then valid ones so the run can finish."""

    answers: dict[str, list[tuple[str, str | None]]]
    model: str = "fake/hostile"
    base: ScriptedTransport = field(default_factory=lambda: ScriptedTransport(fields=FIELDS))

    async def __call__(self, req: LLMRequest) -> Completion:
        step = req.slot.split(":")[1]
        queue = self.answers.get(step)
        if queue:
            text, finish = queue.pop(0)
            return Completion(text, finish, 3, 3, 0.0)
        return await self.base(req)


# ---------------------------------------------------------------------------
# the engine's full step handling, fed arbitrary answers
# ---------------------------------------------------------------------------


@settings(max_examples=60, **SETTINGS)
@given(answers=answers_by_step, depth=st.integers(1, 2), spc=st.integers(1, 4), retries=st.integers(0, 2))
@pytest.mark.slow
def test_engine_survives_arbitrary_answers(answers, depth, spc, retries):
    size = 14
    cfg = build_config(flags={"task": "math word problems", "fields": ",".join(FIELDS), "depth": depth, "size": size, "pivots": 4,
                              "samples_per_call": spc, "validation_retries": retries, "max_field_chars": 64, "concurrency": 4})
    d = Path(tempfile.mkdtemp(prefix="treesynth-hostile-"))
    try:
        out = d / "run"
        fin = asyncio.run(asyncio.wait_for(Run.create(cfg, out, transport=HostileTransport(answers)).execute(), 60))
        assert fin.status == "complete", fin
        assert fin.rows == size
        check_run(out, size, FIELDS)
        # and the run directory reads back (resume of a finished run)
        run = Run.resume(out, transport=HostileTransport({}))
        assert run.finished
        run.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# prompts: untrusted values (from the LLM) are data, never template code
# ---------------------------------------------------------------------------


@settings(max_examples=150, **SETTINGS)
@given(dim=nasty_text, vals=st.lists(nasty_text, max_size=4), pivots=st.lists(sample_like, max_size=4), err=nasty_text)
@pytest.mark.slow
def test_prompts_render_any_values_literally(dim, vals, pivots, err):
    from treesynth.core.prompts import Prompts

    p = Prompts(build_config(flags={"task": "math", "fields": "question,answer"}))
    path = [{"dimension": dim, "value": v} for v in vals]
    out = [p.pivots(path, 3), p.criterion(path, pivots, [dim], 5), p.assign(path, pivots, dim, vals),
           p.supplement(path, dim, vals, 3), p.generate(path, 2)]
    out.append(p.retry(out[0], err, err))
    for msgs in out:
        assert all(isinstance(m["content"], str) for m in msgs)
    if "{{ 7*7 }}" in vals:
        assert "{{ 7*7 }}" in p.generate(path, 2)[1]["content"]


# ---------------------------------------------------------------------------
# config files
# ---------------------------------------------------------------------------

config_keys = st.sampled_from(sorted(RunConfig.model_fields)) | st.text(max_size=10)


@settings(max_examples=200, **SETTINGS)
@given(suffix=st.sampled_from([".yaml", ".toml", ".json", ".yml", ".txt"]), body=st.text(max_size=300) | st.binary(max_size=200))
def test_config_file_of_arbitrary_bytes(tmp_path, suffix, body):
    p = tmp_path / f"cfg{suffix}"
    p.write_bytes(body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body)
    try:
        load_config_file(p)
        build_config(config_file=p, flags={"task": "x"})
    except ConfigError as e:
        one_line(e)


@settings(max_examples=200, **SETTINGS)
@given(data=st.dictionaries(config_keys, json_like, max_size=8), fmt=st.sampled_from(["json", "yaml"]))
@pytest.mark.slow
def test_config_file_with_arbitrary_keys_and_values(tmp_path, data, fmt):
    import yaml

    p = tmp_path / f"cfg.{fmt}"
    try:
        text = json.dumps(data) if fmt == "json" else yaml.safe_dump(data)
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
    except (ValueError, yaml.YAMLError):
        return  # not representable in that format: nothing to load
    try:
        cfg = build_config(config_file=p)
    except ConfigError as e:
        one_line(e)
        return
    assert isinstance(cfg, RunConfig)
    json.dumps(cfg.redacted())  # what a run writes to config.json


# ---------------------------------------------------------------------------
# damaged run directories
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    cfg = build_config(flags={"task": "math", "fields": "question,answer", "depth": 2, "size": 30, "pivots": 4, "samples_per_call": 3})
    fin = asyncio.run(Run.create(cfg, out, transport=ScriptedTransport()).execute())
    assert fin.status == "complete"
    return out


@settings(max_examples=120, **SETTINGS)
@given(
    name=st.sampled_from(["tree.json", "nodes.jsonl", "samples.jsonl", "slots.jsonl", "state.json", "config.json"]),
    how=st.sampled_from(["replace", "append", "truncate", "insert"]),
    junk=st.binary(max_size=200) | json_like.map(lambda v: json.dumps(v).encode()),
    at=st.floats(0, 1),
)
@pytest.mark.slow
def test_damaged_run_directory_resumes_or_fails_with_one_line(finished_run, name, how, junk, at):
    d = Path(tempfile.mkdtemp(prefix="treesynth-damaged-"))
    try:
        out = d / "run"
        shutil.copytree(finished_run, out)
        (out / "dataset.jsonl").unlink()
        (out / "dataset.parquet").unlink()
        f = out / name
        data = f.read_bytes() if f.exists() else b""
        cut = int(len(data) * at)
        data = {"replace": junk, "append": data + junk, "truncate": data[:cut], "insert": data[:cut] + junk + data[cut:]}[how]
        f.write_bytes(data)
        try:
            run = Run.resume(out, transport=ScriptedTransport())
        except (RunDirError, ConfigError) as e:
            one_line(e)
            return
        try:
            fin = asyncio.run(asyncio.wait_for(run.execute(), 60))
        except TreesynthError as e:
            one_line(e)
            return
        assert fin.status in ("complete", "incomplete"), fin
        if fin.status == "complete":
            rows = [json.loads(x) for x in (out / "dataset.jsonl").read_text().splitlines()]
            assert len(rows) == 30 and len({r["id"] for r in rows}) == 30
    finally:
        shutil.rmtree(d, ignore_errors=True)
