"""The taxonomy format: a tree as a nested document a person can read and edit, and such a document read
back as the splits a run takes as they are (``treesynth run --tree-from``). Pure functions: files are
read and written at the edges (core/treesource.py, core/treeout.py).

    task: Short customer-support questions about a bike shop
    fields: [question, answer]
    depth: 2
    tree:
      dimension: topic
      values:
        - value: repairs
          dimension: urgency          # a deeper split (optional)
          values:
            - value: same day
              examples: [{question: "...", answer: "..."}]   # optional: shown to that leaf's prompt
            - value: this week
        - value: sales
          leaf: true                  # never split further
        - value: rentals              # split further by the model while shallower than the depth

A value in the file is matched by its path of (dimension, value) pairs, not by position, so renaming a
value in an editor is all it takes. ``one_of: [a, b, c]``, alone in a split's list, is an open-ended
value: one child whose rows each draw one of the values (what a grown split with a long list becomes).

A document is checked by the rules a split the model proposes must pass (core/criterion.py,
core/partition.py), strictly: a grown split quietly drops a bad value and asks again, a file is fixed by
the person who wrote it, so any problem is an error naming where it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .criterion import placeholder_reason
from .partition import Split, Value, is_catch_all, open_ended_label, overlapped
from .text import normalise
from .tree import EXPANDED, LEAF, PRUNED, Node, Tree

NodePath = tuple[tuple[str, str], ...]  # (dimension, value) from the root down
TOP_KEYS = ("task", "fields", "depth", "tree")
# what `treesynth tree --format json` adds to every node: read, never acted on (the file may go back in)
INFO_KEYS = frozenset({"id", "status", "rows", "target", "reason"})
_NODE_KEYS = frozenset({"dimension", "values", "examples"}) | INFO_KEYS
_ENTRY_KEYS = _NODE_KEYS | {"value", "one_of", "leaf"}
MAX_LABEL_CHARS = 120  # as the coverage supplement and a steering edit allow
MAX_EXAMPLES = 10  # per value, as a config's examples
# a leaf made for want of quota, not for want of a split: a bigger run may split it
NO_QUOTA_REASON = "no samples allocated"


class TaxonomyError(ValueError):
    """A document that is not a valid taxonomy; the message is one line and says where."""


@dataclass(frozen=True)
class Taxonomy:
    """A validated taxonomy: the given split of every node it defines (a split with no values keeps the
    node a leaf), and the examples given for values."""

    splits: Mapping[NodePath, Split]
    examples: Mapping[NodePath, tuple[dict[str, str], ...]] = field(default_factory=dict)

    def split_for(self, path: NodePath) -> Split | None:
        """The node's given split; None where the file leaves it to the model."""
        return self.splits.get(path)

    def examples_for(self, path: NodePath) -> list[dict[str, str]] | None:
        """The examples of the value nearest the node on its path (its own first), or None."""
        for i in range(len(path), -1, -1):
            ex = self.examples.get(path[:i])
            if ex:
                return [dict(e) for e in ex]
        return None


@dataclass(frozen=True)
class GivenShape:
    """What a given taxonomy settles before a run (for the estimate): ``splits`` nodes split with no call,
    ``leaves`` values it makes leaves of, and the depths of its ``open`` values (the model grows them on to
    the run's depth)."""

    splits: int
    leaves: int
    open: tuple[int, ...]


def given_shape(tax: Taxonomy) -> GivenShape:
    """The shape of the tree ``tax`` gives (pure)."""
    splits = leaves = 0
    open_depths: list[int] = []
    todo: list[NodePath] = [()]
    while todo:
        path = todo.pop()
        split = tax.splits.get(path)
        if split is None:
            open_depths.append(len(path))
            continue
        if not split.values:  # given as a leaf
            leaves += 1
            continue
        splits += 1
        if split.open_ended:  # one child whose rows each draw a value: a leaf
            leaves += 1
            continue
        todo.extend((*path, (split.dimension, v.value)) for v in split.values)
    return GivenShape(splits, leaves, tuple(sorted(open_depths)))


# ---- tree -> document --------------------------------------------------------


def taxonomy_document(
    tree: Tree, *, task: str | None = None, fields: Sequence[str] | None = None, depth: int | None = None,
    examples: Mapping[str, list[dict[str, Any]]] | None = None, info: Mapping[str, dict[str, Any]] | None = None,
    max_depth: int | None = None,
) -> dict[str, Any]:
    """A tree as a taxonomy document: every live split (pruned values and subtrees left out), leaves that
    the run made early marked ``leaf: true`` (``depth`` is the run's: a leaf shallower than it had no honest
    split), ``examples`` (leaf id -> rows) on their leaves and ``info`` (node id -> id, status, rows, ...)
    on every node. Below ``max_depth`` nothing is written: a run given the document grows it again."""
    examples = examples or {}
    info = info or {}
    deepest = depth if depth is not None else max((n.depth for n in tree), default=0)
    live: dict[str, bool] = {}
    for n in reversed(list(tree.walk())):
        live[n.id] = n.status != PRUNED and (n.status != EXPANDED or any(live.get(c, False) for c in n.children))

    def body(n: Node) -> dict[str, Any]:
        out: dict[str, Any] = dict(info.get(n.id, {}))
        kids = [tree.get(c) for c in n.children if live.get(c)]
        if n.status == EXPANDED and kids and (max_depth is None or n.depth < max_depth):
            out["dimension"] = n.split_dimension or kids[0].dimension or ""
            if len(kids) == 1 and kids[0].open_ended:
                out["values"] = [{"one_of": list(kids[0].values), **body(kids[0])}]
            else:
                out["values"] = [{"value": k.value or "", **body(k)} for k in kids]
        elif n.parent is not None and n.status == LEAF and not n.open_ended and n.depth < deepest and not (n.reason or "").startswith(NO_QUOTA_REASON):
            out["leaf"] = True
        if examples.get(n.id):
            out["examples"] = [dict(e) for e in examples[n.id]]
        return out

    doc: dict[str, Any] = {}
    if task:
        doc["task"] = task
    if fields:
        doc["fields"] = list(fields)
    if depth is not None:
        doc["depth"] = depth
    doc["tree"] = body(tree.root)
    return doc


# ---- document -> validated splits -------------------------------------------


def taxonomy_defaults(doc: Any) -> dict[str, Any]:
    """The run settings a document carries (``task``, ``fields``, ``depth``), as config keys: a run given
    the document takes them unless its own settings say otherwise."""
    if not isinstance(doc, dict):
        raise TaxonomyError("expected a mapping with a 'tree' at the top level")
    out: dict[str, Any] = {}
    task = doc.get("task")
    if task is not None:
        if not isinstance(task, str) or not task.strip():
            raise TaxonomyError("'task' must be a sentence")
        out["task"] = task
    fields = doc.get("fields")
    if fields is not None:
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
            raise TaxonomyError("'fields' must be a list of field names")
        out["fields"] = list(fields)
    depth = doc.get("depth")
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TaxonomyError("'depth' must be a whole number")
        out["depth"] = depth
    return out


def parse_taxonomy(doc: Any, *, task: str, fields: Sequence[str], depth: int) -> Taxonomy:
    """Check a document against a run's settings and return its splits. Raises TaxonomyError (one line)."""
    taxonomy_defaults(doc)  # the header's types
    unknown = sorted(str(k) for k in doc if k not in TOP_KEYS)
    if unknown:
        raise TaxonomyError(f"unknown key(s) {', '.join(map(repr, unknown))} at the top level (known: {', '.join(TOP_KEYS)})")
    root = doc.get("tree")
    if not isinstance(root, dict):
        raise TaxonomyError("'tree' must be a mapping with a 'dimension' and its 'values'")
    parser = _Parser(tuple(fields), task, depth)
    parser.node(root, (), (), 0, "the root", root=True)
    if () not in parser.splits:
        raise TaxonomyError("the root has no split: give its 'dimension' and 'values'")
    return Taxonomy(splits=parser.splits, examples=parser.examples)


def _where(path: NodePath) -> str:
    return "the root" if not path else " / ".join(f"{d} = {v}" for d, v in path)


def _text(raw: Any, what: str) -> str:
    """A label from the document: text (a number is taken as its text), whitespace collapsed."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        hint = " (quote it)" if isinstance(raw, bool) or raw is None else ""
        raise TaxonomyError(f"{what} must be text{hint}")
    s = " ".join(str(raw).split())
    if not s:
        raise TaxonomyError(f"{what} is empty")
    if len(s) > MAX_LABEL_CHARS:
        raise TaxonomyError(f"{what} {s[:40]!r}... is longer than {MAX_LABEL_CHARS} characters")
    return s


class _Parser:
    def __init__(self, fields: tuple[str, ...], task: str, depth: int) -> None:
        self.fields, self.task, self.depth = fields, task, depth
        self.splits: dict[NodePath, Split] = {}
        self.examples: dict[NodePath, tuple[dict[str, str], ...]] = {}

    def fail(self, where: str, problem: str) -> TaxonomyError:
        return TaxonomyError(f"at {where}: {problem}")

    def node(self, d: dict[str, Any], path: NodePath, dims: tuple[str, ...], level: int, where: str, root: bool = False) -> None:
        allowed = _NODE_KEYS if root else _ENTRY_KEYS
        unknown = sorted(str(k) for k in d if k not in allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(sorted(allowed - INFO_KEYS))})")
        if "examples" in d:
            self.examples[path] = self.rows(d["examples"], where)
        has_dim, has_values = d.get("dimension") is not None, d.get("values") is not None
        if d.get("leaf") not in (None, False, True):
            raise self.fail(where, "'leaf' must be true or false")
        if d.get("leaf") is True:
            if has_dim or has_values:
                raise self.fail(where, "a value marked 'leaf: true' has no 'dimension' or 'values'")
            self.splits[path] = Split("", ())
            return
        if not has_dim and not has_values:
            return  # the model splits it (while it is shallower than the run's depth)
        if not has_dim:
            raise self.fail(where, "'values' without a 'dimension': name what the values are values of")
        if not has_values:
            raise self.fail(where, "'dimension' without 'values': list the values (or remove the dimension)")
        if level + 1 > self.depth:
            raise self.fail(where, f"a split here makes depth {level + 1}, deeper than the run's depth {self.depth} (raise --depth, or remove the split)")
        dim = self.dimension(d["dimension"], dims, where)
        entries = d["values"]
        if not isinstance(entries, list) or not entries:
            raise self.fail(where, f"the values of {dim!r} must be a non-empty list")
        if any(isinstance(e, dict) and "one_of" in e for e in entries):
            self.open_ended(entries, dim, path, dims, level, where)
            return
        entries = [e if isinstance(e, dict) else {"value": e} for e in entries]  # `- repairs` is `- value: repairs`
        labels: list[str] = []
        for i, e in enumerate(entries):
            if "value" not in e:
                raise self.fail(where, f"values[{i}] of {dim!r} has no 'value'")
            try:
                labels.append(_text(e["value"], f"a value of {dim!r}"))
            except TaxonomyError as err:
                raise self.fail(where, str(err)) from None
        self.values(labels, dim, where)
        self.splits[path] = Split(dim, tuple(Value(v, (), "given") for v in labels))
        for label, e in zip(labels, entries, strict=True):
            child = (*path, (dim, label))
            self.node(e, child, (*dims, dim), level + 1, _where(child))

    def open_ended(self, entries: list[Any], dim: str, path: NodePath, dims: tuple[str, ...], level: int, where: str) -> None:
        if len(entries) != 1:
            raise self.fail(where, f"'one_of' is the only entry of {dim!r}'s values (one child whose rows each draw one of them)")
        e = entries[0]
        for k in ("value", "dimension", "values", "leaf"):
            if k in e:
                raise self.fail(where, f"a 'one_of' entry has no {k!r}: its rows draw their value from the list")
        raw = e["one_of"]
        if not isinstance(raw, list) or len(raw) < 2:
            raise self.fail(where, "'one_of' must list at least two values")
        try:
            labels = [_text(v, f"a value of {dim!r}") for v in raw]
        except TaxonomyError as err:
            raise self.fail(where, str(err)) from None
        self.values(labels, dim, where)
        self.splits[path] = Split(dim, tuple(Value(v, (), "given") for v in labels), open_ended=True)
        child = (*path, (dim, open_ended_label(dim, len(labels))))
        self.node({k: v for k, v in e.items() if k != "one_of"}, child, (*dims, dim), level + 1, _where(child))

    def dimension(self, raw: Any, ancestors: tuple[str, ...], where: str) -> str:
        try:
            dim = _text(raw, "the dimension")
        except TaxonomyError as e:
            raise self.fail(where, str(e)) from None
        why = placeholder_reason(dim, self.fields, self.task)
        if why:
            raise self.fail(where, f"dimension {why}")
        if any(normalise(a) == normalise(dim) for a in ancestors):
            raise self.fail(where, f"dimension {dim!r} is already used above it on the path; split by something else")
        return dim

    def values(self, labels: list[str], dim: str, where: str) -> None:
        seen: dict[str, str] = {}
        for v in labels:
            n = normalise(v)
            if not n or is_catch_all(v):
                raise self.fail(where, f"value {v!r} of {dim!r} is a catch-all or placeholder; name a concrete value")
            why = placeholder_reason(v, self.fields, self.task)
            if why:
                raise self.fail(where, f"value {why}")
            if n in seen:
                raise self.fail(where, f"value {v!r} of {dim!r} repeats {seen[n]!r} (values must differ beyond case and spacing)")
            seen[n] = v
            o = overlapped(v, labels)
            if o is not None:
                raise self.fail(where, f"value {v!r} of {dim!r} overlaps {o!r}: values must be mutually exclusive")

    def rows(self, raw: Any, where: str) -> tuple[dict[str, str], ...]:
        if not isinstance(raw, list):
            raise self.fail(where, "'examples' must be a list of rows")
        if len(raw) > MAX_EXAMPLES:
            raise self.fail(where, f"at most {MAX_EXAMPLES} examples per value (got {len(raw)})")
        out: list[dict[str, str]] = []
        want = set(self.fields)
        for i, r in enumerate(raw):
            if not isinstance(r, dict) or set(map(str, r)) != want:
                raise self.fail(where, f"examples[{i}] must give exactly the fields {', '.join(self.fields)}")
            row: dict[str, str] = {}
            for f in self.fields:
                v = r[f]
                if isinstance(v, bool) or not isinstance(v, (str, int, float)) or not str(v).strip():
                    raise self.fail(where, f"examples[{i}].{f} must be non-empty text")
                row[f] = str(v)
            out.append(row)
        return tuple(out)
