"""The embedded model's batched decoder against the real model (SmolLM2-135M via llama.cpp): several
calls decode at once, each answer is what its grammar admits, shared prompt prefixes are reused."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from treesynth.core.errors import ProviderError
from treesynth.core.llm.transports.local import _N_CTX, _LocalEngine

SCHEMA = {
    "type": "object",
    "properties": {"samples": {"type": "array", "minItems": 2, "maxItems": 2, "items": {
        "type": "object", "properties": {"question": {"type": "string", "minLength": 5, "maxLength": 80},
                                         "answer": {"type": "string", "minLength": 1, "maxLength": 40}},
        "required": ["question", "answer"], "additionalProperties": False}}},
    "required": ["samples"], "additionalProperties": False,
}
SYSTEM = "You write grade-school math word problems as JSON. Each answer ends with #### and the number."


def _call(engine, i, **params):
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Write 2 short word problems about topic {i}."}]
    return engine.complete(msgs, {"temperature": 0.8, "seed": i, "max_tokens": 400,
                                  "response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}, **params})


@pytest.mark.slow
def test_concurrent_calls_decode_together_and_obey_their_grammar():
    engine = _LocalEngine.get("smollm2")
    d = engine.decoder
    before = dict(d.stats)
    with ThreadPoolExecutor(6) as ex:
        outs = list(ex.map(lambda i: _call(engine, i), range(6)))
    for out in outs:
        choice = out["choices"][0]
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"], strict=False), SCHEMA)
        u = out["usage"]
        assert u["completion_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    passes = d.stats["passes"] - before["passes"]
    tokens = d.stats["tokens"] - before["tokens"]
    assert tokens > passes * 1.5, f"{tokens} tokens in {passes} passes: the calls did not decode together"
    # the system prompt every call shares is evaluated once, then reused
    assert d.stats["reused"] - before["reused"] >= 5 * 20


@pytest.mark.slow
def test_a_json_object_answer_and_the_context_limit():
    engine = _LocalEngine.get("smollm2")
    msgs = [{"role": "user", "content": "Give a JSON object with a key named city."}]
    out = engine.complete(msgs, {"temperature": 0.0, "max_tokens": 60, "response_format": {"type": "json_object"}})
    text = out["choices"][0]["message"]["content"]
    if out["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(text, strict=False), dict)
    else:
        assert text.startswith("{")
    with pytest.raises(ProviderError, match="does not fit"):
        engine.complete([{"role": "user", "content": "word " * (_N_CTX + 10)}], {"max_tokens": 10})


@pytest.mark.slow
def test_loading_the_model_prints_nothing():
    """llama.cpp logs every step of loading to stderr; a user sees only treesynth's own lines."""
    import subprocess
    import sys

    code = ("from treesynth.core.llm.transports.local import _LocalEngine\n"
            "e = _LocalEngine.get('smollm2')\n"
            "print(e.complete([{'role': 'user', 'content': 'Hi'}], {'max_tokens': 4})['usage']['completion_tokens'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.strip() == "", r.stderr[-2000:]
    assert int(r.stdout.strip()) >= 1
