"""The one fake provider of the tests: valid, plausible answers to the engine's calls, chosen by the
request's schema, never by its prompt's wording.

Every call the product makes names its schema (``LLMRequest.schema_name``; on the wire the
``json_schema`` response_format's ``name`` or, for Anthropic, the forced tool's name):

    pivots       the pivot samples of a node           core/engine/expand.py (the step's name)
    criterion    a dimension and its values            core/criterion.py
    assign       one value per pivot                   core/criterion.py
    supplement   the values coverage adds              core/schemas.py
    samples      a leaf's generated rows               core/engine/synth.py
    verdicts     the judge's verdicts                  core/quality/judge.py
    route<N>     balance's routing labels              core/balance/route.py

A request that carries the schema without its name (llama.cpp's ``json_object`` + ``schema`` dialect)
or under the generic default name (``answer``: balance's task inference) is known by the schema's
properties instead (``step_of``). What an answer needs is read from the schema too: how many samples
and which fields (``minItems``, the item's properties), how many values at most, the pivots to assign and
the values to choose from (the assign schema's keys and ``enum``), the rows to label and the values'
count (route), the rows and constraints to judge.

Two things only the prompt holds (the node's path, for the depth a fake's labels name; the rows a judge
sees, for planted failures) are read in one place, ``PromptFacts``, at the end of this module.

Used by tests/stub_server.py (``StubOpenAI`` and the batch servers' answers), tests/faultserver.py and
``ScriptedTransport`` in tests/fakes.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

STEPS = ("pivots", "criterion", "assign", "supplement", "samples", "verdicts", "route", "task")


# ---------------------------------------------------------------------------------- what was asked


@dataclass(frozen=True)
class Call:
    """One request as a fake sees it: its step (from the schema), the schema, the messages."""

    step: str
    schema: dict[str, Any] | None
    messages: list[dict[str, Any]]

    @classmethod
    def of(cls, name: str | None, schema: dict[str, Any] | None, messages: list[dict[str, Any]]) -> Call:
        return cls(step_of(name, schema), schema if isinstance(schema, dict) else None, list(messages or []))

    @classmethod
    def from_request(cls, req: Any) -> Call:
        """An ``LLMRequest`` (the scripted, in-process transport)."""
        return cls.of(req.schema_name, req.schema, req.messages)

    @classmethod
    def from_openai(cls, body: dict[str, Any]) -> Call:
        """An OpenAI chat-completions body: ``response_format`` json_schema (name and schema), llama.cpp's
        json_object + schema (schema only), or nothing (no schema)."""
        rf = body.get("response_format") if isinstance(body, dict) else None
        name, schema = None, None
        if isinstance(rf, dict):
            if rf.get("type") == "json_schema":
                js = rf.get("json_schema") or {}
                name, schema = js.get("name"), js.get("schema")
            else:
                schema = rf.get("schema")
        return cls.of(name, schema, body.get("messages") or [] if isinstance(body, dict) else [])

    @classmethod
    def from_anthropic(cls, params: dict[str, Any], messages: list[dict[str, Any]]) -> Call:
        """An Anthropic Messages request: the forced tool's name and input schema."""
        choice = params.get("tool_choice") or {}
        tool = next((t for t in params.get("tools") or [] if isinstance(t, dict) and t.get("name") == choice.get("name")), None)
        return cls.of(choice.get("name"), (tool or {}).get("input_schema"), messages)


def step_of(name: str | None, schema: dict[str, Any] | None) -> str:
    """The protocol step a schema belongs to: by its name, else (no name, or the generic ``answer``) by its
    properties; ``other`` for none of them."""
    if name:
        if name.startswith("route"):
            return "route"
        if name in STEPS:
            return name
    props = set(_props(schema))
    if props == {"samples"}:
        return "samples"  # pivots ask for the same shape: a nameless request for them is answered alike
    if props == {"dimension", "values"}:
        return "criterion"
    if props == {"status", "values"}:
        return "supplement"
    if props == {"verdicts"}:
        return "verdicts"
    if props == {"labels"}:
        return "route"
    if props == {"task"}:
        return "task"
    if props and all(k.isdigit() for k in props):
        return "assign"
    return "other"


def _props(schema: Any) -> dict[str, Any]:
    p = schema.get("properties") if isinstance(schema, dict) else None
    return p if isinstance(p, dict) else {}


def _count(prop: dict[str, Any], default: int) -> int:
    """How many items an array property asks for (``minItems``, else ``maxItems``)."""
    n = prop.get("minItems", prop.get("maxItems"))
    return n if isinstance(n, int) and n > 0 else default


# ---------------------------------------------------------------------------------- the answers


@dataclass
class FakeProvider:
    """Answers a ``Call``. The label and sample texts are format strings over ``depth`` (the node's),
    ``j`` (a value's number), ``i`` (a sample's number), ``field`` and whatever names the caller passes
    (``tag``, ``node``, ``idx``): each fake keeps the words its tests look for."""

    fanout: int = 3  # values a criterion names (at most what its schema allows, at least 2)
    supplement: int = 1  # values coverage adds
    dimension: str = "aspect {depth}"
    value: str = "kind {j} of aspect {depth}"
    extra: str = "extra kind {j} of aspect {depth}"
    pivot: str = "{field} pivot {tag}-{i} at depth {depth}"
    sample: str = "{field} sample {tag}-{i} at depth {depth}"
    task: str = "Grade-school math word problems with worked answers"
    fields: tuple[str, ...] = ("text",)  # a request without a schema gets one sample of these
    judge_fails: tuple[str, ...] = ()  # the judge fails a row whose text holds one of these
    sample_words: int = 0  # pad every sample field to about this many words

    def answer(self, call: Call, depth: int | None = None, violation: str | None = None, **names: Any) -> dict[str, Any]:
        """A valid answer to ``call`` (or, with ``violation`` on a criterion, one that breaks the partition
        rules: "twice", "catch_all" or "ancestor"). ``depth``: the node's, else read from the prompt."""
        if depth is None:
            depth = len(PromptFacts(call.messages).path())
        props = _props(call.schema)
        step = call.step
        if step == "criterion":
            return self._criterion(call, depth, props, violation, names)
        if step == "assign":
            keys = list(props) or ["1"]
            enum = next((p.get("enum") for p in props.values() if isinstance(p, dict) and p.get("enum")), None)
            values = list(enum or [self.value.format(j=0, depth=depth, **names)])
            return {k: values[n % len(values)] for n, k in enumerate(keys)}
        if step == "supplement":
            most = _count(props.get("values", {}), self.supplement) if "values" in props else self.supplement
            k = min(self.supplement, most)
            return {"status": "complete" if k else "none", "values": [self.extra.format(j=j, depth=depth, **names) for j in range(k)]}
        if step == "verdicts":
            return {"verdicts": self._verdicts(call, props)}
        if step == "route":
            labels = props.get("labels", {})
            n_values = (labels.get("items") or {}).get("maximum", 1)
            return {"labels": [(n % max(1, n_values)) + 1 for n in range(_count(labels, 1))]}
        if step == "task":
            return {"task": self.task}
        # pivots, samples, and a request with no schema to go by: samples
        samples = props.get("samples", {})
        fields = list(_props(samples.get("items"))) or list(self.fields)
        form = self.pivot if step == "pivots" else self.sample
        return {"samples": [{f: _pad(form.format(field=f, i=i, depth=depth, **names), self.sample_words) for f in fields}
                            for i in range(_count(samples, 1))]}

    def _criterion(self, call: Call, depth: int, props: dict[str, Any], violation: str | None, names: dict[str, Any]) -> dict[str, Any]:
        most = (props.get("values") or {}).get("maxItems", self.fanout)
        dimension = self.dimension.format(depth=depth, **names)
        values = [self.value.format(j=j, depth=depth, **names) for j in range(max(2, min(self.fanout, most)))]
        if violation == "catch_all":
            values = [values[0], "other"]  # one concrete value left: no split
        elif violation == "twice":
            values = [values[0], values[0]]  # a repeat: one value left
        elif violation == "ancestor":
            named = [d for d, _ in PromptFacts(call.messages).path() if d]
            if named:
                dimension = named[0]
            else:  # the root (or a path of data-driven splits) names none: break it another way
                values = ["miscellaneous"]
        return {"dimension": dimension, "values": values}

    def _verdicts(self, call: Call, props: dict[str, Any]) -> list[dict[str, Any]]:
        verdicts = props.get("verdicts", {})
        item = _props(verdicts.get("items"))
        n_cons = _count(item["constraints"], 0) if "constraints" in item else 0
        rows = PromptFacts(call.messages).judged_rows() if self.judge_fails else []
        out = []
        for n in range(_count(verdicts, 1)):
            bad = n < len(rows) and any(x in rows[n] for x in self.judge_fails)
            out.append({"reason": "planted failure" if bad else "ok", "constraints": [not bad] * n_cons, "fits_task": True, "complete": True})
        return out


_FILLER = ("a farmer buys apples and sells them at the market for a profit of three dollars each so how many "
           "does she need to sell to earn enough money for the new bicycle that costs two hundred dollars").split()


def _pad(text: str, words: int) -> str:
    """Lengthen a sample field to about ``words`` words (realistic answer sizes for token counts)."""
    have = len(text.split())
    if words <= have:
        return text
    return text + " " + " ".join(_FILLER[i % len(_FILLER)] for i in range(words - have))


# ---------------------------------------------------------------------------------- the prompt, once


class PromptFacts:
    """The only place a fake reads a prompt's text (assets/prompts/: ``_context.j2``'s path lines and
    ``judge.j2``'s rows), for what no schema carries."""

    _PATH_HEAD = "Every sample must satisfy"
    _ROWS_HEAD = "Rows to check:"
    _ROW = re.compile(r"^Row \d+:\n", re.M)

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        first = users[0] if users else (messages[-1] if messages else {})
        self.text = str(first.get("content", "")) if isinstance(first, dict) else ""  # the first user message: a retry keeps it

    def path(self) -> list[tuple[str | None, str]]:
        """The node's path: (dimension, value) per level, dimension None where the prompt names only the value."""
        if self._PATH_HEAD not in self.text:
            return []
        out: list[tuple[str | None, str]] = []
        for line in self.text.split(self._PATH_HEAD, 1)[1].split("\n", 1)[-1].splitlines():
            if not line.startswith("- "):
                break
            dim, sep, value = line[2:].partition(": ")
            out.append((dim, value) if sep else (None, dim))
        return out

    def judged_rows(self) -> list[str]:
        """Each row's text, in order, as the judge's prompt shows it (``field: text`` lines)."""
        if self._ROWS_HEAD not in self.text:
            return []
        blocks = self._ROW.split(self.text.split(self._ROWS_HEAD, 1)[1])[1:]
        return [b.split("\n\n")[0].strip("\n") for b in blocks]
