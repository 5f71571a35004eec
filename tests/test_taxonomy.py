"""The taxonomy format (core/taxonomy.py) and the Mermaid view (core/mermaid.py), as pure functions: a
hand-written document is checked by the rules a grown split obeys, one line per problem; a tree written
as a document reads back as the same splits, whatever text its labels hold; Mermaid labels cannot break
out of their node."""

from __future__ import annotations

import copy
import html
import re

import pytest
import yaml

from treesynth.core.mermaid import escape_label, mermaid_tree
from treesynth.core.partition import open_ended_label
from treesynth.core.taxonomy import TaxonomyError, parse_taxonomy, taxonomy_defaults, taxonomy_document
from treesynth.core.tree import EXPANDED, LEAF, PRUNED, Node, Tree

TASK = "Short customer-support questions about a bike shop"
FIELDS = ("question", "answer")
BIKE = """
task: Short customer-support questions about a bike shop
fields: [question, answer]
depth: 2
tree:
  dimension: topic
  values:
    - value: repairs
      dimension: urgency
      values:
        - value: same day
          examples: [{question: "Can you fix a flat by noon?", answer: "Yes, bring it in before 10."}]
        - value: this week
    - value: sales
      leaf: true
    - rentals
"""


def doc(text: str = BIKE) -> dict:
    return yaml.safe_load(text)


def parse(d: dict, depth: int = 2):
    return parse_taxonomy(d, task=TASK, fields=FIELDS, depth=depth)


def test_a_hand_written_file_gives_its_splits_leaves_and_examples():
    t = parse(doc())
    root = t.split_for(())
    assert root.dimension == "topic" and [v.value for v in root.values] == ["repairs", "sales", "rentals"]
    assert all(v.source == "given" for v in root.values)
    repairs = t.split_for((("topic", "repairs"),))
    assert repairs.dimension == "urgency" and [v.value for v in repairs.values] == ["same day", "this week"]
    assert t.split_for((("topic", "sales"),)).values == ()  # leaf: true -> a leaf, no calls
    assert t.split_for((("topic", "rentals"),)) is None  # no split given: the model's, while shallower than the depth
    same_day = (("topic", "repairs"), ("urgency", "same day"))
    assert t.examples_for(same_day) == [{"question": "Can you fix a flat by noon?", "answer": "Yes, bring it in before 10."}]
    assert t.examples_for((("topic", "sales"),)) is None
    assert taxonomy_defaults(doc()) == {"task": TASK, "fields": ["question", "answer"], "depth": 2}


def _with(path: list, key: str, value) -> dict:
    """BIKE with ``value`` set at ``path`` (keys and list indices) under 'tree'."""
    d = doc()
    node = d["tree"]
    for p in path:
        node = node[p]
    node[key] = value
    return d


def _deeper() -> dict:
    d = _with(["values", 0, "values", 0], "dimension", "season")
    d["tree"]["values"][0]["values"][0]["values"] = ["spring", "winter"]
    return d


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: _with(["values", 0, "values", 1], "value", "Value 1"), "'Value 1' is a placeholder"),
    (lambda: _with(["values", 1], "value", "other"), "'other' of 'topic' is a catch-all"),
    (lambda: _with(["values", 1], "value", "N/A"), "'N/A' of 'topic' is a catch-all"),
    (lambda: _with(["values", 1], "value", "..."), "'...' of 'topic' is a catch-all"),
    (lambda: _with(["values", 1], "value", "  REPAIRS "), "repeats 'repairs'"),
    (lambda: _with(["values", 1], "value", "repairs and sales"), "overlaps"),
    (lambda: _with([], "dimension", "   "), "the dimension is empty"),
    (lambda: _with([], "dimension", "dimension_1"), "placeholder"),
    (lambda: _with(["values", 0], "dimension", "Topic"), "already used above it"),
    (lambda: _deeper(), "deeper than the run's depth 2"),
    (lambda: _with(["values", 1], "valeus", ["a", "b"]), "unknown key(s) 'valeus'"),
    (lambda: _with(["values", 0, "values", 1], "dimension", "size"), "'dimension' without 'values'"),
    (lambda: _with(["values", 1], "value", True), "must be text (quote it)"),
    (lambda: _with(["values", 0, "values", 0], "examples", [{"question": "q"}]), "exactly the fields question, answer"),
    (lambda: _with(["values", 0], "leaf", True), "'leaf: true' has no 'dimension'"),
    (lambda: _with([], "values", [{"one_of": ["a b", "c d"]}, {"value": "x y"}]), "'one_of' is the only entry"),
    (lambda: {**doc(), "tree": {"values": ["a", "b"]}}, "'values' without a 'dimension'"),
    (lambda: {**doc(), "tree": {}}, "the root has no split"),
    (lambda: {**doc(), "colour": 1}, "unknown key(s) 'colour' at the top level"),
    (lambda: ["not", "a", "mapping"], "expected a mapping"),
])
def test_a_bad_document_is_one_line_that_says_where(make, expected):
    with pytest.raises(TaxonomyError) as e:
        parse(make())
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_the_depth_bounds_the_splits_not_the_other_way_round():
    assert parse(doc(), depth=3).split_for((("topic", "rentals"),)) is None  # grown further by the model
    with pytest.raises(TaxonomyError, match="deeper than the run's depth 1"):
        parse(doc(), depth=1)


def _grown_tree(labels: list[str]) -> Tree:
    """A grown tree whose values are ``labels``, with what a run leaves behind: a pruned value, an
    open-ended child, an early leaf and a leaf made for want of quota."""
    t = Tree.new(40)
    root = t.root
    root.status, root.split_dimension = EXPANDED, "topic"
    for i, v in enumerate(labels + ["gone"]):
        c = Node(id=f"0.{i}", parent="0", depth=1, dimension="topic", value=v, status=LEAF, target=10)
        t.upsert(c)
        root.children.append(c.id)
    t.get(f"0.{len(labels)}").status = PRUNED
    a = t.get("0.0")
    a.status, a.split_dimension = EXPANDED, "city"
    oe = Node(id="0.0.0", parent="0.0", depth=2, dimension="city", value=open_ended_label("city", 3), values=["Paris", "Lyon", "Nice"],
              source="open_ended", status=LEAF, target=10)
    t.upsert(oe)
    a.children = [oe.id]
    t.get("0.1").reason = "no valid split: ..."
    t.get("0.2").reason = "no samples allocated to this subtree"
    t.check()
    return t


HOSTILE = ["yes", "null", "- dash first", "key: value", "#hash", "quote \" and ' both", "[brackets] {braces}", "émoji 🚲 ok", "1984 model year"]


def test_a_tree_written_as_yaml_reads_back_as_the_same_splits():
    t = _grown_tree(HOSTILE)
    d = taxonomy_document(t, task=TASK, fields=FIELDS, depth=2)
    back = yaml.safe_load(yaml.safe_dump(d, sort_keys=False, allow_unicode=True))
    assert back == d
    tax = parse(back)
    assert [v.value for v in tax.split_for(()).values] == HOSTILE  # the pruned value is left out
    city = tax.split_for((("topic", "yes"),))
    assert city.open_ended and [v.value for v in city.values] == ["Paris", "Lyon", "Nice"]
    assert tax.split_for((("topic", "null"),)).values == ()  # a leaf the run made early stays a leaf
    assert tax.split_for((("topic", "- dash first"),)) is None  # a leaf for want of quota may split in a bigger run
    assert tax.split_for((("topic", "yes"), ("city", open_ended_label("city", 3)))) is None  # a leaf at the run's depth
    # the json form: every node's id, status and rows ride along, and the document still reads back
    info = {n.id: {"id": n.id, "status": n.status, "rows": 1, "target": n.target} for n in t}
    rich = taxonomy_document(t, task=TASK, fields=FIELDS, depth=2, info=info)
    assert rich["tree"]["id"] == "0" and rich["tree"]["values"][0]["values"][0]["id"] == "0.0.0"
    assert parse(copy.deepcopy(rich)).splits == tax.splits


def test_mermaid_labels_cannot_break_out_of_their_node():
    evil = ['x"] --> n0\nclick n0 call alert(1)', "<script>alert(1)</script>", "a #quot; b", "%%{init: {}}%%", "`md` | pipe ; semi", "end"]
    t = _grown_tree(evil)
    out = mermaid_tree(t, {n.id: 2 for n in t}, title="task with ] and \" and\nnewline")
    lines = out.splitlines()
    assert lines[0] == "```mermaid" and lines[1] == "graph TD" and lines[-1] == "```"
    node_line = re.compile(r'^  n[0-9_]+(\["[^"\[\]<>`|\n]*"\]|\("[^"\[\]<>`|\n]*"\))$')
    edge_line = re.compile(r"^  n[0-9_]+ --> n[0-9_]+$")
    body = lines[2:-1]
    assert all(node_line.match(x.replace("<br/>", " ")) or edge_line.match(x) for x in body), body
    assert sum(1 for x in body if edge_line.match(x)) == len(evil) + 1  # the pruned value is left out
    assert "n0_6" not in out
    # what a viewer shows: the entity codes decoded, the text as the model wrote it (on one line)
    shown = html.unescape(re.sub(r"#(\w+);", lambda m: f"&#{m.group(1)};" if m.group(1).isdigit() else f"&{m.group(1)};", escape_label(evil[0])))
    assert shown == 'x"] --> n0 click n0 call alert(1)'
    assert escape_label("a #quot; b") == "a #35;quot#59; b"  # a literal entity code stays literal


def test_the_readmes_taxonomy_is_valid():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Trees as files"):]
    (block,) = re.findall(r"```yaml\n(.*?)```", section[: section.index("\n## ", 5)], re.S)
    d = yaml.safe_load(block)
    t = parse_taxonomy(d, **{**taxonomy_defaults(d), "fields": tuple(d["fields"])})
    assert t.split_for((("topic", "sales"),)).values == () and t.split_for((("topic", "rentals"),)) is None
