"""A tree as a Mermaid flowchart (``treesynth tree RUN --format mermaid``) that a Markdown viewer renders.
Labels are the model's text, so untrusted: every character Mermaid's grammar or its HTML labels give a
meaning to is written as an entity code, and line breaks and control characters become spaces. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from .text import truncate
from .tree import EXPANDED, LEAF, PRUNED, Node, Tree

LABEL_CHARS = 80
# Mermaid decodes ``#name;`` / ``#123;`` in labels (to HTML entities): '#' first, so none of these codes is
# read twice; quotes end a label, brackets and pipes open shapes and edge texts, < > & are HTML, ` starts
# markdown text, ; and : end statements and styles.
_CODES = {
    "#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;", "[": "#91;", "]": "#93;",
    "{": "#123;", "}": "#125;", "(": "#40;", ")": "#41;", "|": "#124;", ";": "#59;", ":": "#58;", "\\": "#92;",
}


def escape_label(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` made safe inside a quoted Mermaid label: one line, at most ``limit`` visible characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return "".join(_CODES.get(c, c) for c in truncate(flat, limit))


def node_name(node_id: str) -> str:
    """A Mermaid node name for a tree id ("0.2.1" -> "n0_2_1"): letters, digits and underscores only."""
    return "n" + node_id.replace(".", "_")


def mermaid_tree(tree: Tree, rows: Mapping[str, int] | None = None, title: str | None = None, max_depth: int | None = None) -> str:
    """A ```` ```mermaid ```` block with a ``graph TD`` of the tree's live nodes: the root (``title``, e.g. the
    task), then ``dimension = value`` per node with its rows (``rows``: node id -> rows in its subtree);
    leaves are rounded; pruned subtrees are left out; nothing below ``max_depth``."""

    def label(n: Node) -> str:
        head = escape_label(title or "(root)") if n.parent is None else escape_label(f"{n.dimension} = {n.value}")
        parts = [head]
        if rows is not None:
            parts.append(f"{rows.get(n.id, 0):,} rows")
        if n.status not in (EXPANDED, LEAF):
            parts.append(escape_label(f"[{n.status}]"))
        return "<br/>".join(parts)

    lines = ["```mermaid", "graph TD"]
    edges: list[str] = []
    for n in tree.walk():
        if n.status == PRUNED or (max_depth is not None and n.depth > max_depth):
            continue
        shape = '("{}")' if n.status == LEAF else '["{}"]'
        lines.append(f"  {node_name(n.id)}{shape.format(label(n))}")
        if n.parent is not None:
            edges.append(f"  {node_name(n.parent)} --> {node_name(n.id)}")
    lines += edges
    lines.append("```")
    return "\n".join(lines)
