"""The tests' one fake provider (tests/fake_provider.py) answers by the request's schema, not its wording:
prompts that say nothing a fake could recognise still get valid answers, by name and in every wire form."""

from __future__ import annotations

import json

import pytest

from tests.fake_provider import Call, FakeProvider, step_of
from tests.fakes import ScriptedTransport
from tests.stub_server import StubOpenAI
from treesynth.core.balance import route_schema, validate_route
from treesynth.core.criterion import assign_schema, criterion_schema, validate_assignment, validate_criterion
from treesynth.core.llm import LLMRequest
from treesynth.core.llm.structured import JSON_OBJECT_SCHEMA, JSON_SCHEMA, response_format
from treesynth.core.partition import validate_coverage
from treesynth.core.quality import judge_schema, parse_verdicts
from treesynth.core.schemas import samples_schema, supplement_schema

WORDLESS = [{"role": "system", "content": "..."}, {"role": "user", "content": "nothing a fake could read"}]
VALUES = ["alpha", "beta", "gamma"]
SCHEMAS = {  # the name each step's call carries (LLMRequest.schema_name), and its schema
    "pivots": samples_schema(("question", "answer"), 4, 300),
    "samples": samples_schema(("question", "answer"), 5, 300),
    "criterion": criterion_schema(4),
    "assign": assign_schema(6, VALUES),
    "supplement": supplement_schema(2),
    "verdicts": judge_schema(3, 2),
    "route0": route_schema(7, 3),
}


def _check(name: str, obj: dict) -> None:
    if name in ("pivots", "samples"):
        n = SCHEMAS[name]["properties"]["samples"]["minItems"]
        assert len(obj["samples"]) == n and all(set(s) == {"question", "answer"} for s in obj["samples"])
    elif name == "criterion":
        dim, values = validate_criterion(obj, [], 4, ("question", "answer"), "math")
        assert dim and len(values) >= 2
    elif name == "assign":
        assert sorted(set(validate_assignment(obj, 6, VALUES))) == [0, 1, 2]
    elif name == "supplement":
        assert validate_coverage(obj, ["x"], 2).added
    elif name == "verdicts":
        assert len(parse_verdicts(obj, 3, 2)) == 3
    else:
        assert len(validate_route(obj, 7, 3)) == 7


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_each_step_is_answered_by_its_schema_name_whatever_the_prompt_says(name):
    call = Call.from_request(LLMRequest(WORDLESS, slot="0:x:0", schema=SCHEMAS[name], schema_name=name))
    assert call.step == ("route" if name == "route0" else name)
    _check(name, FakeProvider().answer(call, tag="t"))


@pytest.mark.parametrize("mode", [JSON_SCHEMA, JSON_OBJECT_SCHEMA])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_wire_forms_carry_what_the_fake_needs(name, mode):
    """json_schema names the schema; llama.cpp's json_object + schema does not, and the schema's
    properties tell the step (pivots then read as samples, the same shape)."""
    body = {"messages": WORDLESS, "response_format": response_format(mode, SCHEMAS[name], name)}
    call = Call.from_openai(body)
    _check(name, FakeProvider().answer(call, tag="t"))


def test_a_generic_name_falls_back_to_the_schema_s_shape():
    assert step_of("answer", {"type": "object", "properties": {"task": {"type": "string"}}}) == "task"
    assert step_of(None, None) == "other"


async def test_the_scripted_transport_and_the_stub_answer_a_wordless_request_alike():
    req = LLMRequest(WORDLESS, slot="0.1:assign:0", schema=SCHEMAS["assign"], schema_name="assign")
    scripted = json.loads((await ScriptedTransport()(req)).text)
    with StubOpenAI() as stub:
        import urllib.request

        body = {"model": "m", "messages": WORDLESS, "response_format": response_format(JSON_SCHEMA, SCHEMAS["assign"], "assign")}
        r = urllib.request.urlopen(urllib.request.Request(f"{stub.url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}))
        answered = json.loads(json.loads(r.read())["choices"][0]["message"]["content"])
    assert scripted == answered == {str(i): VALUES[(i - 1) % 3] for i in range(1, 7)}
