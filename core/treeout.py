"""``treesynth tree RUN_DIR --format text|json|yaml|mermaid``: a run's tree read from its directory and
written in one of four forms. ``yaml`` is the taxonomy format (core/taxonomy.py) a person edits and gives
back with ``--tree-from``; ``json`` is the same nested document with every node's id, status, rows and
target (it can go back too); ``mermaid`` is a flowchart for a Markdown page; ``text`` is the console view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .mermaid import mermaid_tree
from .reader import RunReader
from .taxonomy import taxonomy_document
from .tree import Tree
from .treeview import render_tree, subtree_counts

FORMATS = ("text", "json", "yaml", "mermaid")

YAML_HEADER = """\
# A treesynth taxonomy (treesynth tree {run} --format yaml).
# Edit it: rename, add or remove values; give a value a 'dimension' and 'values' to split it. Then:
#   treesynth run --tree-from THIS_FILE --size N --no-ui
# A value with no 'values' is split further by the model while it is shallower than 'depth';
# 'leaf: true' keeps it a leaf. 'task', 'fields' and 'depth' apply unless the run sets them.
"""


def leaf_examples(reader: RunReader, tree: Tree, fields: list[str], per_leaf: int) -> dict[str, list[dict[str, Any]]]:
    """The first ``per_leaf`` rows of every leaf as the dataset has them (rows the judge failed left out),
    their fields only."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in reader.iter_samples():
        lid = row.get("leaf_id")
        if not isinstance(lid, str) or lid not in tree.nodes or len(out.setdefault(lid, [])) >= per_leaf:
            continue
        if all(isinstance(row.get(f), str) for f in fields):
            out[lid].append({f: row[f] for f in fields})
    return out


def tree_output(run_dir: Path, fmt: str = "text", max_depth: int | None = None, examples: int = 0) -> str:
    """The run's tree in ``fmt``; ``examples``: rows per leaf written into a json or yaml document."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown tree format {fmt!r} (formats: {', '.join(FORMATS)})")
    reader = RunReader.open(Path(run_dir))
    tree, counts, targets = reader.leaf_rows()
    if fmt == "text":
        return render_tree(tree, counts, max_depth=max_depth, leaf_targets=targets)
    cfg = reader.config()
    rows = subtree_counts(tree, counts)
    if fmt == "mermaid":
        return mermaid_tree(tree, rows, title=cfg.get("task"), max_depth=max_depth)
    fields = [f for f in cfg.get("fields") or [] if isinstance(f, str)]
    shown = leaf_examples(reader, tree, fields, examples) if examples > 0 and fields else None
    info = None
    if fmt == "json":
        planned = subtree_counts(tree, targets) if targets is not None else {n.id: n.target for n in tree}
        info = {
            n.id: {"id": n.id, "status": n.status, "rows": rows.get(n.id, 0), "target": planned.get(n.id, 0), **({"reason": n.reason} if n.reason else {})}
            for n in tree
        }
    depth = cfg.get("depth")
    doc = taxonomy_document(
        tree, task=cfg.get("task"), fields=fields or None, depth=depth if isinstance(depth, int) else None,
        examples=shown, info=info, max_depth=max_depth,
    )
    if fmt == "json":
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    import yaml

    head = YAML_HEADER.format(run=" ".join(str(run_dir).split()))
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
