"""Quality gates: validators, the judge's verdicts, and the engine rewriting what they turn away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import call_cli, cli_env, gsm8k_file, read_jsonl
from tests.fakes import ScriptedTransport, hash_embedder
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError, JudgeError
from treesynth.core.parsing import ParseError
from treesynth.core.quality import Validator, failures, judge_schema, parse_verdicts, wrong_calculations
from treesynth.core.quality.verdicts import constraint_texts, judge_looks_broken
from treesynth.core.run import Run


# ---------------------------------------------------------------- validators (pure)
def test_gsm8k_preset_validators_pass_real_rows_and_catch_broken_ones():
    cfg = build_config(flags={"preset": "gsm8k"})
    good = {"question": "Maria buys 3 packs of 12 pencils and gives 9 away. How many are left?",
            "answer": "She has 3 * 12 = 36 pencils. 36 - 9 = 27.\n#### 27"}
    assert failures(good, cfg.validators) == []
    no_final = dict(good, answer="She has 3 * 12 = 36 pencils. 36 - 9 = 27.")
    assert any("####" in f for f in failures(no_final, cfg.validators))
    wrong = dict(good, answer="She has 3 * 12 = 38 pencils. 38 - 9 = 29.\n#### 29")
    assert failures(wrong, cfg.validators) == ["answer: has a wrong calculation"]
    short = dict(good, question="How many?")
    assert failures(short, cfg.validators) == ["question: shorter than 40 characters"]


def test_gsm8k_preset_validators_on_human_gsm8k():
    """The regex and length checks pass every real GSM8K test row; the arithmetic check flags only rows
    whose written calculation is wrong as written (measured: 11 of 1,319)."""
    cfg = build_config(flags={"preset": "gsm8k"})
    rows = read_jsonl(gsm8k_file("test"))
    fails = [failures(r, cfg.validators) for r in rows]
    assert not [f for f in fails if f and f != ["answer: has a wrong calculation"]]
    assert sum(1 for f in fails if f) <= 0.02 * len(rows)


@pytest.mark.parametrize("text,wrong", [
    ("3 * 12 = 36 and 36 - 9 = 27", []),
    ("3 * 12 = 35", ["3 * 12 = 35"]),
    ("$5 x 4 = $20, 1,200 / 4 = 300, (3 + 4) * 2 = 14", []),
    ("(3 + 4) * 2 = 15", ["(3 + 4) * 2 = 15"]),
    ("72 * 3/4 = 54 cubic ft; 3 * 1/4 = 3/4", []),  # a fraction as the result is not read as a whole number
    ("20% of 50 = 10", []),
    ("2 * .5 = 1", []),
    ("1/0 = 3", []),  # cannot be computed: skipped, not a crash
])
def test_arithmetic_check(text, wrong):
    assert wrong_calculations(text) == wrong


def test_a_small_models_endless_sum_is_read_at_once():
    """SmolLM2 wrote "The answer is 2 + 2 + ... + 2 + #### 2889238" (43 terms, no "="): the former pattern had
    2^terms ways to fail on it and held a run's event loop for 20+ minutes. Guarded by an alarm: a hang fails."""
    import signal

    def hung(*_):
        raise AssertionError("wrong_calculations did not return within 20 s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        assert wrong_calculations("The answer is " + "2 + " * 43 + "#### 2889238") == []
        assert wrong_calculations("(" * 30 + "2 " + "+ 2 ) " * 400 + "= 3") == []
        assert wrong_calculations("2 + " * 20 + "2 = 43") == ["2 + " * 20 + "2 = 43"]  # still read, and wrong (42)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_the_calculation_pattern_reads_human_gsm8k_as_the_former_one_did():
    """The pattern lost its ambiguity, not a match: on every GSM8K question and answer (train and test) it finds
    the same calculations, at the same places, as the former pattern (kept here; fast enough on human text)."""
    import re

    from treesynth.core.validators import _EXPR, _NUM

    former = re.compile(
        rf"(?<![\w.,/$])(?<![-+*/×÷]\s)(?<!\d\s)((?:\(\s*)*{_NUM}(?:[\s()]*[-+*/x×÷][\s()]*(?:{_NUM})[\s)]*)+)=\s*\$?({_NUM})(?![\w/]|\.\d|\s\d+/)"
    )
    texts = [r[f] for name in ("train", "test") for r in read_jsonl(gsm8k_file(name)) for f in ("question", "answer")]
    found = 0
    for t in texts:
        mine = [(m.span(), m.groups()) for m in _EXPR.finditer(t)]
        assert mine == [(m.span(), m.groups()) for m in former.finditer(t)], t
        found += len(mine)
    assert found > 10_000  # GSM8K's answers are full of calculations: the comparison compared something


def test_repetition_catches_a_small_models_loops_and_no_human_gsm8k_row():
    cfg = build_config(flags={"preset": "gsm8k"})
    loop = {"question": "This is a sample of the word problems. This is a sample of the word problems. This is a sample of the word problems?",
            "answer": "The man's " + "son's " * 20 + "son is 4.\n#### 4"}
    assert failures(loop, cfg.validators) == ["question: repeats itself (over 35% of its word trigrams)",
                                              "answer: repeats itself (over 45% of its word trigrams)"]
    rows = read_jsonl(gsm8k_file("train"))
    assert not [r for r in rows if any("repeats" in f for f in failures(r, cfg.validators))]


def test_garbled_words_fail_and_no_human_gsm8k_row_does():
    cfg = build_config(flags={"preset": "gsm8k"})
    # an answer SmolLM2-135M wrote behind llama-cpp-python's server (session 10); it passed every other check
    junk = {"question": "How many ways can you arrange the letters in the word CANI?",
            "answer": "C125S265I284F45J4E6LZ5M5706TJYR1Y6VB9TG49Y5VB9LJYLBZM1Y1VB9YLBZM2Y4YTG4VBZM1Y1VBZGKGKGKGK" + "GK" * 40 + " #### 27"}
    assert failures(junk, cfg.validators) == ["answer: has a 'word' over 100 characters (garbled text)"]
    assert failures({**junk, "question": "Whatis" * 6 + " the answer here, said in one long word?",
                     "answer": "3 + 4 = 7.\n#### 7"}, cfg.validators) == ["question: has a 'word' over 30 characters (garbled text)"]
    # the README's run on the embedded model (session 11)
    strung = {"question": "Brenda has 30 dollars saved and spends 12 of them on books. How much does she have left?",
              "answer": "She has 30 - 12 = 18 left. A?i,tA?i.dA.a.tA?A.tA.b.tA.i.nA.tA.i.jA.tA.tA.a.tA.i.lA.tA #### 18"}
    assert failures(strung, cfg.validators) == ["answer: has letters strung on punctuation (garbled text)"]
    assert failures({**strung, "answer": "She has 30 - 12 = 18 dollars left, i.e. U.S. dollars at 9 a.m. on Mon.\n#### 18"}, cfg.validators) == []
    rows = read_jsonl(gsm8k_file("train")) + read_jsonl(gsm8k_file("test"))
    assert not [r for r in rows if any("garbled" in f for f in failures(r, cfg.validators))]


def test_python_json_and_length_validators():
    vs = [Validator(field="output", kind="python"), Validator(field="meta", kind="json"),
          Validator(field="output", kind="max_chars", value=30)]
    assert failures({"output": "def f(x):\n    return x", "meta": '{"a": 1}'}, vs) == []
    assert failures({"output": "def f(x) return", "meta": "{a: 1}"}, vs) == [
        "output: is not valid Python", "meta: is not valid JSON"]
    assert failures({"output": "x = 1\n" * 10, "meta": "1"}, vs) == ["output: longer than 30 characters"]
    assert failures({}, vs[:1]) == ["output: is not valid Python"]  # a missing field fails its checks


def test_validators_never_execute_code(tmp_path):
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    vs = [Validator(field="output", kind="python"), Validator(field="output", kind="arithmetic")]
    failures({"output": code}, vs)
    failures({"output": f"{code} = 3"}, vs)
    assert not marker.exists()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_validators_take_any_text(text):
    vs = [Validator(field="f", kind=k) for k in ("python", "json", "arithmetic")] + [
        Validator(field="f", kind="regex", value="#### -?[0-9]+$"), Validator(field="f", kind="min_chars", value=3)]
    out = failures({"f": text}, vs)
    assert all(isinstance(x, str) for x in out)


def test_bad_validators_are_one_line_config_errors():
    for bad, msg in [
        ({"field": "answer", "kind": "regex", "value": "("}, "invalid regular expression"),
        ({"field": "answer", "kind": "min_chars"}, "whole number"),
        ({"field": "answer", "kind": "eval"}, "kind"),
        ({"field": "nope", "kind": "python"}, "unknown fields"),
    ]:
        with pytest.raises(ConfigError, match=msg) as e:
            build_config(flags={"task": "t", "fields": "question,answer", "validators": [bad]})
        assert "\n" not in str(e.value)


def test_config_validators_add_to_the_presets():
    cfg = build_config(flags={"preset": "gsm8k", "validators": [{"field": "question", "kind": "max_chars", "value": 400}]})
    assert [v.kind for v in cfg.validators] == ["regex", "arithmetic", "min_chars", "repetition", "repetition", "regex", "regex", "regex", "regex", "max_chars"]
    assert cfg.dedup_threshold == 0.92  # DEFAULT_NEAR_DUP_COSINE, measured on GSM8K train
    assert build_config(flags={"preset": "gsm8k", "dedup_threshold": 0.0}).dedup_threshold == 0.0


# ---------------------------------------------------------------- verdicts (pure)
def test_parse_verdicts():
    obj = {"verdicts": [{"reason": "ok", "constraints": [True, "yes"], "fits_task": True, "complete": 1},
                        {"reason": "not about baking", "constraints": [True, False], "fits_task": True, "complete": True}]}
    v = parse_verdicts(obj, 2, 2)
    assert [x.passed for x in v] == [True, False]
    assert v[1].constraints == (True, False) and v[1].reason == "not about baking"
    path = [{"dimension": "setting", "value": "baking"}, {"dimension": "steps", "value": "two"}]
    assert v[1].why(path) == "breaks steps = two; the judge said: not about baking"
    # a small judge's "ok" under a failing verdict: the record says what failed first
    assert parse_verdicts({"verdicts": [{"reason": "ok", "constraints": [False, True], "fits_task": False, "complete": False}]}, 1, 2)[0].why(path) == (
        "breaks setting = baking; off-task; incomplete; the judge said: ok")
    with pytest.raises(ParseError, match="exactly 2 verdicts"):
        parse_verdicts({"verdicts": obj["verdicts"][:1]}, 2, 2)
    with pytest.raises(ParseError, match="exactly 3 constraint"):
        parse_verdicts(obj, 2, 3)
    with pytest.raises(ParseError, match="fits_task"):
        parse_verdicts({"verdicts": [{"reason": "x", "constraints": [], "complete": True}]}, 1, 0)
    with pytest.raises(ParseError, match="true or false"):
        parse_verdicts({"verdicts": [{"reason": "x", "fits_task": "maybe", "complete": True}]}, 1, 0)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json, st.integers(1, 4), st.integers(0, 3))
def test_hostile_judge_output_is_a_parse_error_or_exact_verdicts(obj, n, k):
    try:
        out = parse_verdicts(obj, n, k)
    except ParseError:
        return
    assert len(out) == n and all(len(v.constraints) == k for v in out)
    assert all(isinstance(v.passed, bool) and len(v.reason) <= 160 for v in out)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({"reason": st.text(min_size=1, max_size=50), "constraints": st.lists(st.booleans(), min_size=2, max_size=2),
                                       "fits_task": st.booleans(), "complete": st.booleans()}), min_size=1, max_size=5))
def test_schema_shaped_answers_always_parse(items):
    schema = judge_schema(len(items), 2)
    assert schema["properties"]["verdicts"]["minItems"] == len(items)
    out = parse_verdicts({"verdicts": items}, len(items), 2)
    assert [v.passed for v in out] == [i["fits_task"] and i["complete"] and all(i["constraints"]) for i in items]


@pytest.mark.parametrize("n_constraints", [0, 3])
def test_judge_schema_requires_every_answer_and_asks_the_reason_last(n_constraints):
    """A decoder that enforces the schema (llama.cpp's grammar) writes the keys in this order and cannot
    leave one out: a key missing from "required" became optional there, and SmolLM2 left it out."""
    import jsonschema

    schema = judge_schema(2, n_constraints)
    item = schema["properties"]["verdicts"]["items"]
    assert item["required"] == list(item["properties"])
    assert list(item["properties"])[-1] == "reason" and list(item["properties"])[-3:-1] == ["fits_task", "complete"]
    good = {"constraints": [True] * n_constraints, "fits_task": True, "complete": False, "reason": "ok"}
    if not n_constraints:
        del good["constraints"]
    jsonschema.validate({"verdicts": [good, good]}, schema)
    for key in good:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"verdicts": [good, {k: v for k, v in good.items() if k != key}]}, schema)


def test_constraint_texts():
    path = [{"dimension": "setting", "value": "a bakery"}, {"dimension": "embedding cluster (level 1)", "value": "rows about trains"}]
    assert constraint_texts(path) == ["setting: a bakery", "rows about trains"]


# ---------------------------------------------------------------- the engine with the gates
def _cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 40, "pivots": 6}
    flags.update(kw)
    return build_config(flags=flags)


def _run(cfg, out, transport, **kw):
    run = Run.create(cfg, out, transport=transport, embed=hash_embedder, **kw)
    events: list[ev.Event] = []
    fin = asyncio.run(run.execute(events.append))
    return fin, events, run


def test_judge_failures_are_regenerated_to_exact_size(tmp_path):
    t = ScriptedTransport(judge_fails=("item 1",))
    fin, events, run = _run(_cfg(judge=True), tmp_path / "r", t)
    assert fin.status == "complete" and fin.rows == 40
    data = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert len(data) == 40 and all(r["judge"]["pass"] for r in data)
    assert not any("item 1" in r["question"] for r in data)
    verdicts = read_jsonl(tmp_path / "r" / "verdicts.jsonl")
    failed = {v["id"] for v in verdicts if not v["pass"]}
    stored = read_jsonl(tmp_path / "r" / "samples.jsonl")
    # exactly the planted rows failed, each judged once, and every stored row has one verdict
    assert failed == {r["id"] for r in stored if "item 1" in r["question"]} and failed
    assert sorted(v["id"] for v in verdicts) == sorted(r["id"] for r in stored)
    assert all(t.judged[k] == 1 for k in t.judged)
    rejected = read_jsonl(tmp_path / "r" / "rejected.jsonl")
    assert {r["id"] for r in rejected if r["gate"] == "judge"} == failed
    assert all(r["detail"].endswith("the judge said: planted failure") and r["path"] for r in rejected)
    q = [e for e in events if isinstance(e, ev.Quality)]
    assert q[-1].judged == len(stored) and q[-1].judge_rejected == len(failed) and q[-1].passed == 40
    assert [x.judged for x in q] == sorted(x.judged for x in q)  # cumulative
    progress = [e.samples_done for e in events if isinstance(e, ev.LeafProgress)]
    assert progress == sorted(progress) and progress[-1] == 40  # rows count once they pass: never backwards
    assert run.quality().judged == q[-1].judged and run.quality().passed == 40


def test_a_leaf_filled_again_never_reuses_a_row_id(tmp_path):
    """Found against the real server: the top-up round asked a leaf's slots again from 0, a real model
    answered differently (the call asked for fewer rows), and two stored rows shared an id."""
    class Varied(ScriptedTransport):
        n = 0

        async def __call__(self, req):
            c = await ScriptedTransport.__call__(self, req)
            if ":gen:" in req.slot:
                Varied.n += 1
                obj = json.loads(c.text)
                for s in obj["samples"]:
                    s["question"] += f" (call {Varied.n})"
                c = c.__class__(json.dumps(obj), c.finish_reason, c.tokens_in, c.tokens_out, c.cost)
            return c

    t = Varied(judge_fails=("of leaf 0.0 ",))  # one leaf never passes: its quota is topped up elsewhere
    fin, events, _ = _run(_cfg(judge=True, size=12, depth=1), tmp_path / "r", t)
    assert any(isinstance(e, ev.RunWarning) and "topping up" in e.message for e in events)
    stored = read_jsonl(tmp_path / "r" / "samples.jsonl")
    ids = [r["id"] for r in stored]
    assert len(ids) == len(set(ids))
    verdicts = read_jsonl(tmp_path / "r" / "verdicts.jsonl")
    assert sorted(v["id"] for v in verdicts) == sorted(ids)
    assert fin.status == "complete" and len(read_jsonl(tmp_path / "r" / "dataset.jsonl")) == 12


def test_a_judge_that_rejects_nearly_everything_stops_the_run_resumably(tmp_path):
    """Measured: SmolLM2 behind the server fails every row; rewriting would go on without end. The run
    stops with one line naming the judge, keeps what it wrote, and resumes with another judge."""
    t = ScriptedTransport(judge_fails=("question",))  # every row fails
    run = Run.create(_cfg(judge=True, size=200, depth=1), tmp_path / "r", transport=t, embed=hash_embedder)
    with pytest.raises(JudgeError, match=r"the judge \(\S+\) passed 0 of the \d+ rows it checked.*--judge-model"):
        asyncio.run(run.execute(lambda e: None))
    assert sum(t.judged.values()) < 200  # stopped after the sanity rows (and those in flight), not after every leaf's budget
    stored = read_jsonl(tmp_path / "r" / "samples.jsonl")
    assert stored and json.loads((tmp_path / "r" / "state.json").read_text())["status"] == "incomplete"
    # resumed without the judge: rows that failed stay out (rewritten), the rest count
    run = Run.resume(tmp_path / "r", {"judge": False}, transport=ScriptedTransport(), embed=hash_embedder)
    fin = asyncio.run(run.execute(lambda e: None))
    assert fin.status == "complete" and len(read_jsonl(tmp_path / "r" / "dataset.jsonl")) == 200


@pytest.mark.parametrize(("judged", "passed", "broken"), [(29, 0, False), (30, 0, True), (30, 2, True), (30, 3, False), (300, 29, True), (300, 30, False)])
def test_judge_looks_broken(judged, passed, broken):
    assert judge_looks_broken(judged, passed) is broken


def test_a_judge_that_never_answers_validly_fails_rows_and_the_run_says_so(tmp_path):
    class Broken(ScriptedTransport):
        async def __call__(self, req):
            if ":judge:" in req.slot:
                from treesynth.core.llm import Completion
                return Completion('{"verdicts": []}', "stop", 5, 5, 0.0)
            return await ScriptedTransport.__call__(self, req)

    with pytest.raises(JudgeError, match="passed 0 of the 30 rows"):  # the sanity check stops the rewriting
        _run(_cfg(judge=True, size=12, depth=1, validation_retries=1), tmp_path / "r", Broken())
    rej = read_jsonl(tmp_path / "r" / "rejected.jsonl")
    assert rej and all("no valid verdict" in r["detail"] for r in rej)
    assert not (tmp_path / "r" / "dataset.jsonl").exists()


def test_validator_failures_are_regenerated(tmp_path):
    class Sloppy(ScriptedTransport):
        async def __call__(self, req):
            c = await ScriptedTransport.__call__(self, req)
            if ":gen:" in req.slot:
                obj = json.loads(c.text)
                for i, s in enumerate(obj["samples"]):
                    if i == 0:
                        s["answer"] = "no final number"
                    else:
                        s["answer"] += " #### 7"
                c = c.__class__(json.dumps(obj), c.finish_reason, c.tokens_in, c.tokens_out, c.cost)
            return c

    cfg = _cfg(validators=[{"field": "answer", "kind": "regex", "value": "#### [0-9]+$", "name": "no final number"}])
    fin, events, run = _run(cfg, tmp_path / "r", Sloppy())
    assert fin.status == "complete" and fin.rows == 40
    data = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert all(r["answer"].endswith("#### 7") for r in data)
    rej = read_jsonl(tmp_path / "r" / "rejected.jsonl")
    assert rej and all(r["gate"] == "validator" and r["detail"] == "answer: no final number" for r in rej)
    assert run.quality().validator_rejected == len(rej)


def test_treesynth_judge_judges_a_finished_run_and_keeps_its_size(tmp_path):
    out = tmp_path / "r"
    fin, _, _ = _run(_cfg(), out, ScriptedTransport())
    assert fin.status == "complete"
    before = read_jsonl(out / "dataset.jsonl")
    t = ScriptedTransport(judge_fails=("item 0",))
    run = Run.resume(out, overrides={"judge": True}, transport=t, embed=hash_embedder)
    fin = asyncio.run(run.execute())
    assert fin.status == "complete" and fin.rows == 40
    after = read_jsonl(out / "dataset.jsonl")
    assert len(after) == 40 and all(r["judge"]["pass"] for r in after)
    bad = [r for r in before if "item 0" in r["question"]]
    assert bad and not {r["id"] for r in bad} & {r["id"] for r in after}
    assert {r["id"] for r in before} - {r["id"] for r in bad} <= {r["id"] for r in after}
    # judging again asks nothing: every row has its verdict
    t2 = ScriptedTransport()
    fin = asyncio.run(Run.resume(out, overrides={"judge": True}, transport=t2, embed=hash_embedder).execute())
    assert fin.status == "complete" and t2.calls["judge"] == 0


def test_judge_cli_errors_are_one_line(tmp_path):
    r = call_cli("judge", str(tmp_path / "nope"))
    assert r.returncode != 0 and "not a treesynth run directory" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_kill_while_judging_then_resume_loses_no_verdict_and_asks_none_twice(tmp_path):
    out = tmp_path / "r"
    env = cli_env()
    p = subprocess.Popen([sys.executable, "-m", "tests.judge_worker", str(out)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    verdicts = out / "verdicts.jsonl"
    while p.poll() is None and time.monotonic() < deadline:
        if verdicts.exists() and verdicts.read_text().count("\n") >= 6:
            break
        time.sleep(0.02)
    assert p.poll() is None, p.stderr.read()[-2000:]
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    judged_before = {v["id"] for v in read_jsonl(verdicts)}
    stored_before = {r["id"]: r for r in read_jsonl(out / "samples.jsonl")}
    in_flight = set(stored_before) - judged_before
    r = subprocess.run([sys.executable, "-m", "tests.judge_worker", str(out), "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "complete", r.stderr[-2000:]
    seen = {line.split("\t")[2]: int(line.split("\t")[1]) for line in r.stdout.splitlines()[1:]}
    # rows judged before the kill are never asked again; rows stored but not judged are asked once
    assert not {stored_before[i]["question"] for i in judged_before} & set(seen)
    assert {stored_before[i]["question"] for i in in_flight} <= set(seen)
    assert all(n == 1 for n in seen.values())
    final = read_jsonl(verdicts)
    ids = [v["id"] for v in final]
    assert len(ids) == len(set(ids)) == len(read_jsonl(out / "samples.jsonl"))  # one verdict per stored row
    data = read_jsonl(out / "dataset.jsonl")
    assert len(data) == 60 and all(d["judge"]["pass"] for d in data)


# ---------------------------------------------------------------- semantic dedup in the engine
_VOCAB = [f"w{i}" for i in range(5000)]


def _words(*key, n=10):
    import random

    rng = random.Random(repr(key))
    return " ".join(rng.choice(_VOCAB) for _ in range(n))


class Planting(ScriptedTransport):
    """Rows of distinct random words; the first row of a leaf's second call nearly repeats the first row
    of its first call (one word added): it repeats an accepted row."""

    async def __call__(self, req):
        c = await ScriptedTransport.__call__(self, req)
        if ":gen:" not in req.slot:
            return c
        node, _, idx = req.slot.split(":")
        obj = json.loads(c.text)
        for i, s in enumerate(obj["samples"]):
            s["question"], s["answer"] = _words(node, int(idx), i, "q"), _words(node, int(idx), i, "a")
            if i == 0 and int(idx) == 1:
                s["question"], s["answer"] = _words(node, 0, 0, "q") + " again", _words(node, 0, 0, "a")
        return c.__class__(json.dumps(obj), c.finish_reason, c.tokens_in, c.tokens_out, c.cost)


def test_planted_near_duplicates_are_rewritten_and_the_index_survives_a_resume(tmp_path):
    import numpy as np

    out = tmp_path / "r"
    fin, events, run = _run(_cfg(dedup_threshold=0.9, size=60, samples_per_call=3), out, Planting())
    assert fin.status == "complete" and fin.rows == 60
    data = read_jsonl(out / "dataset.jsonl")
    X = hash_embedder([f"{r['question']}\n{r['answer']}" for r in data])
    sims = X @ X.T
    np.fill_diagonal(sims, 0)
    assert sims.max() < 0.9  # no two kept rows are near-duplicates
    rej = read_jsonl(out / "rejected.jsonl")
    # each planted pair keeps one row (the one accepted first: calls of a leaf run side by side)
    assert rej and all(r["gate"] == "near_duplicate" and float(r["detail"].split()[1]) >= 0.9 for r in rej)
    kept = {(r["leaf_id"], r["question"].removesuffix(" again")) for r in read_jsonl(out / "samples.jsonl")}
    assert all((r["leaf_id"], r["sample"]["question"].removesuffix(" again")) in kept for r in rej)
    assert run.quality().near_duplicates == len(rej)
    stored = read_jsonl(out / "samples.jsonl")
    from treesynth.core.neardup import VectorLog

    log = VectorLog(out / "row_vectors.f16", X.shape[1])
    assert len(log.read()) == len(stored)  # a vector per stored row, in order
    log.close()


def test_dedup_rebuilds_from_stored_vectors_and_embeds_only_rows_left_without_one(tmp_path):
    import numpy as np

    from treesynth.core.quality.dedup import SemanticDedup

    calls: list[int] = []

    def embed(texts):
        calls.append(len(texts))
        return hash_embedder(texts)

    rows = [{"question": _words(i, "q"), "answer": _words(i, "a")} for i in range(30)]
    log = tmp_path / "v.f16"

    async def first():
        d = SemanticDedup(embed, 0.9, log, lambda: iter([]))
        X = await d.vectors(rows)
        keep, _ = d.admit(X)
        assert keep.all()
        d.stored(X[:25])  # a crash before the last 5 vectors were written
        d.close()

    asyncio.run(first())
    calls.clear()

    async def resumed():
        d = SemanticDedup(embed, 0.9, log, lambda: iter(rows))
        X = await d.vectors([dict(rows[27], question=rows[27]["question"] + " again"), {"question": _words("new", "q"), "answer": "x"}])
        keep, sims = d.admit(X)
        d.close()
        return d, keep, sims

    d, keep, sims = asyncio.run(resumed())
    assert d.loaded == 25 and d.embedded_on_resume == 5
    assert sorted(calls) == [2, 5]  # the two new rows, and the five rows that had no vector: never all 30
    assert keep.tolist() == [False, True] and sims[0] >= 0.9
    assert np.isfinite(sims).all()


def test_balance_new_rows_do_not_nearly_repeat_real_rows_or_each_other(tmp_path):
    from treesynth.core.balance import create_balance_run, load_data

    data_path = tmp_path / "d.jsonl"
    with open(data_path, "w") as f:
        for i in range(40):
            f.write(json.dumps({"question": _words(i, "q"), "answer": _words(i, "a")}) + "\n")

    class Copying(ScriptedTransport):
        async def __call__(self, req):
            c = await ScriptedTransport.__call__(self, req)
            if ":gen:" not in req.slot:
                return c
            node, _, idx = req.slot.split(":")
            obj = json.loads(c.text)
            for i, s in enumerate(obj["samples"]):
                if i == 0 and int(idx) % 2 == 0:  # nearly a real row
                    s["question"], s["answer"] = _words(int(idx) % 40, "q") + " again", "x"
                else:
                    s["question"], s["answer"] = _words(node, idx, i, "q"), "x"
            return c.__class__(json.dumps(obj), c.finish_reason, c.tokens_in, c.tokens_out, c.cost)

    data = load_data(str(data_path), "question", ("question", "answer"))
    spec = {"data": str(data_path), "field": "question", "fields": ["question", "answer"], "route": "embed", "route_batch": 10,
            "target_per_leaf": 15, "size": None, "embedder": None}
    run = create_balance_run(data, spec, {"task": "t", "depth": 1, "pivots": 6, "samples_per_call": 3, "dedup_threshold": 0.9},
                            tmp_path / "b", transport=Copying(fields=("question", "answer")), embed=hash_embedder)
    fin = asyncio.run(run.execute())
    assert fin.status == "complete", fin.message
    new = [r for r in read_jsonl(tmp_path / "b" / "balanced.jsonl") if r.get("provenance") != "original"]
    assert new and not any(r["question"].endswith(" again") for r in new)
    rej = read_jsonl(tmp_path / "b" / "rejected.jsonl")
    assert rej and {r["gate"] for r in rej} == {"near_duplicate"}


@pytest.mark.slow
def test_the_index_library_and_the_embedded_model_live_in_one_process(tmp_path):
    """A real process that builds the near-duplicate index past its exact stage (so the index library is
    loaded and used), then loads the embedded model and decodes: a C++ runtime clash between the two
    native libraries (usearch's made llama.cpp fail with std::bad_cast) would fail here."""
    code = (
        "import numpy as np\n"
        "from treesynth.core.neardup import NearDuplicateIndex\n"
        "ix = NearDuplicateIndex(384, 0.92, exact_limit=64, flush_rows=16, expected_rows=50)\n"
        "X = np.random.default_rng(0).standard_normal((200, 384)).astype('float32')\n"
        "ix.add(X)\n"
        "assert not ix.exact and ix.admit(X[:3])[0].tolist() == [False, False, False]\n"
        "from treesynth.core.llm.transports.local import find_gguf\n"
        "from llama_cpp import Llama\n"
        "m = Llama(model_path=str(find_gguf('smollm2')), n_ctx=256, n_threads=1, verbose=False)\n"
        "print(m('2 + 2 =', max_tokens=2)['choices'][0]['text'] is not None)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr[-2000:]


def test_semantic_dedup_embeds_a_stored_row_by_its_fields_alone(tmp_path):
    """A resumed run embeds stored rows that a crash left without a vector: their id, leaf, path and key
    are not the row's text (they were, and such a row's vector matched nothing it should)."""
    from types import SimpleNamespace

    from treesynth.core.engine.mode import GenerationMode

    cfg = build_config(flags={"preset": "gsm8k"})
    mode = GenerationMode(SimpleNamespace(cfg=cfg, store=None, prompts=None, embed=None))  # type: ignore[arg-type]
    sample = {"question": "Tom has  3 apples.", "answer": "3\n#### 3"}
    stored = {"id": "0.1/4/2", "leaf_id": "0.1", "slot": 4, "path": [{"dimension": "topic", "value": "fruit"}], **sample, "_k": 12345}
    assert mode.dedup_text(stored) == mode.dedup_text(sample) == "Tom has 3 apples. 3 #### 3"
    # exact duplicates key on the preset's prompt fields: the same question with another answer repeats it
    assert mode.dedup_key(sample) == mode.dedup_key({**sample, "answer": "4\n#### 4"})
    assert mode.dedup_key(sample) != mode.dedup_key({**sample, "question": "Tom has 4 apples."})
