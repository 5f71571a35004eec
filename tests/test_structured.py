"""The structured-output negotiation's pure logic (core/llm/structured.py): the ladder, the response_format
of each step, and the classification of an endpoint's errors."""

from __future__ import annotations

import pytest

from treesynth.core.llm import structured as so

SCHEMA = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 4000}}, "required": ["q"]}
LLAMA_CPP_500 = "Input should be 'text' or 'json_object'"


def test_ladder_order_and_bottom():
    assert so.LADDER == ("json_schema", "json_object_schema", "json_object", "none")
    assert [so.next_mode(m) for m in so.LADDER] == ["json_object_schema", "json_object", "none", None]


def test_response_format_of_each_step():
    assert so.response_format("json_schema", SCHEMA, "split") == {"type": "json_schema", "json_schema": {"name": "split", "schema": SCHEMA, "strict": False}}
    rf = so.response_format("json_object_schema", SCHEMA)
    assert rf["type"] == "json_object" and rf["schema"]["properties"]["q"]["maxLength"] == 500  # grammar-safe for llama.cpp
    assert rf["schema"]["required"] == ["q"]
    assert so.response_format("json_object", SCHEMA) == {"type": "json_object"}
    assert so.response_format("none", SCHEMA) is None
    assert so.response_format("json_schema", None) is None


@pytest.mark.parametrize("status,message,param", [
    (500, LLAMA_CPP_500, ""),  # llama-cpp-python's server
    (400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.", "response_format"),
    (422, "1 validation error: response_format.type: unexpected value", ""),
    (400, "something odd", "response_format"),
    (500, "litellm.InternalServerError: InternalServerError: OpenAIException - Input should be 'text' or 'json_object'", ""),
    (500, "failed to parse grammar", ""),
    (None, "litellm.APIConnectionError: json_schema is not supported", ""),
])
def test_a_rejected_response_format_is_a_downgrade_whatever_the_status(status, message, param):
    assert so.classify(status, message, param=param, sent_rf=True) == so.DOWNGRADE
    # without a response_format to step down from it is not
    assert so.classify(status, message, param=param, sent_rf=False) != so.DOWNGRADE


@pytest.mark.parametrize("status", [401, 403, 404, 429])
def test_auth_not_found_and_rate_limits_never_downgrade(status):
    assert so.classify(status, "schema quota for response_format", sent_rf=True) != so.DOWNGRADE


def test_generic_server_errors_stay_transient_even_when_repeated():
    for msg in ("internal error", "The server had an error while processing your request.", "The engine is currently overloaded.", "(no message)"):
        for status in (500, 502, 503):
            assert so.classify(status, msg, sent_rf=False, repeated=True) == so.TRANSIENT
    assert so.classify(429, "invalid request rate", sent_rf=False, repeated=True) == so.TRANSIENT


def test_a_request_shaped_500_is_transient_once_and_deterministic_when_it_repeats():
    msg = "1 validation error for CreateChatCompletionRequest\ntop_k\n  Input should be a valid integer"
    assert so.classify(500, msg, sent_rf=False) == so.TRANSIENT
    assert so.classify(500, msg, sent_rf=False, repeated=True) == so.DETERMINISTIC
    # a schema error at the bottom of the ladder (no response_format left to drop)
    assert so.classify(500, LLAMA_CPP_500, sent_rf=False, repeated=True) == so.DETERMINISTIC


def test_other_4xx_are_rejected_for_the_transport_to_handle():
    assert so.classify(400, "This model's maximum context length is 8192 tokens", sent_rf=True) == so.REJECTED
    assert so.classify(401, "Incorrect API key", sent_rf=True) == so.REJECTED


def test_negotiator_steps_down_once_per_rejection_and_remembers():
    n = so.Negotiator()
    mode, rf = n.response_format(SCHEMA)
    assert mode == "json_schema" and rf["type"] == "json_schema"
    assert n.classify(500, LLAMA_CPP_500, sent_mode=mode) == so.DOWNGRADE
    assert n.downgrade(mode, LLAMA_CPP_500) == "json_object_schema"
    # a concurrent request sent in the old mode and rejected too does not step down twice
    assert n.downgrade("json_schema", LLAMA_CPP_500) == "json_object_schema"
    assert n.downgrade("json_object_schema") == "json_object"
    assert n.downgrade("json_object") == "none"
    assert n.downgrade("none") == "none"
    assert n.response_format(SCHEMA) == ("none", None)
    assert [d[:2] for d in n.downgrades] == [("json_schema", "json_object_schema"), ("json_object_schema", "json_object"), ("json_object", "none")]


def test_negotiator_tracks_repeats_and_names_the_endpoint():
    n = so.Negotiator("none")
    msg = "Extra inputs are not permitted: bogus"
    assert n.classify(500, msg, sent_mode=None) == so.TRANSIENT
    assert n.classify(500, "a different message: invalid", sent_mode=None) == so.TRANSIENT
    assert n.classify(500, msg, sent_mode=None) == so.DETERMINISTIC
    line = n.deterministic_message(500, msg, "http://127.0.0.1:9/v1/chat/completions")
    assert "\n" not in line and "HTTP 500" in line and "127.0.0.1:9" in line and msg in line


def test_unknown_start_mode_is_refused():
    with pytest.raises(ValueError):
        so.Negotiator("xml")
