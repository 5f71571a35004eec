"""The tree on disk: the ``tree.json`` snapshot (with its digest) plus the node journal replayed over
it; and a read-only load of both for viewers of a run that may still be going."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from .errors import RunDirError
from .jsonl import read_records
from .rundir import CONFIG, JOURNAL, SNAPSHOT
from .tree import Node, Tree


def tree_digest(nodes_json: bytes, seq: Any) -> str:
    return hashlib.blake2b(nodes_json + b"|" + str(seq).encode(), digest_size=16).hexdigest()


def tree_document(d: Any) -> tuple[Any, bool]:
    """Parse a tree.json document; returns (document, intact). ``intact`` is False when its digest
    does not match, i.e. the file was edited outside treesynth (files without a digest are trusted)."""
    if isinstance(d, dict) and isinstance(d.get("digest"), str):
        try:
            ok = d["digest"] == tree_digest(orjson.dumps(d.get("nodes")), d.get("seq"))
        except TypeError:
            ok = False
        return d, ok
    return d, True


def apply_journal(tree: Tree, seq: int, entries: Iterable[dict[str, Any]], strict: bool) -> tuple[int, int]:
    """Replay node-journal entries newer than ``seq`` onto ``tree``: upserts and deletes. Returns the
    last sequence number applied and how many entries were. ``strict``: an invalid entry raises
    ValueError (resume); otherwise it is skipped (a read-only viewer of a run in progress)."""
    applied = 0
    for entry in entries:
        eseq = entry.get("seq")
        if not isinstance(eseq, int) or eseq <= seq:
            continue
        if isinstance(entry.get("delete"), list):
            tree.remove([i for i in entry["delete"] if isinstance(i, str) and i != "0"])
        else:
            try:
                tree.upsert(Node.from_dict(entry["node"]))
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                if strict:
                    raise ValueError(f"{JOURNAL} entry {eseq} is invalid ({e})") from None
                continue
        seq = eseq
        applied += 1
    return seq, applied


def load_tree_readonly(root: Path) -> Tree:
    """Read a run's tree (snapshot plus journal) without locking or repairing anything."""
    root = Path(root)
    if not (root / CONFIG).is_file():
        raise RunDirError(f"{str(root)!r} is not a treesynth run (no {CONFIG})")
    tree: Tree | None = None
    seq = 0
    tp = root / SNAPSHOT
    if tp.exists():
        try:
            doc, intact = tree_document(orjson.loads(tp.read_bytes()))
            if intact:
                tree, seq = Tree.from_dict(doc)
        except (OSError, ValueError, TypeError, orjson.JSONDecodeError):
            tree, seq = None, 0
    if tree is None:
        tree = Tree.new(0)
    apply_journal(tree, seq, read_records(root / JOURNAL), strict=False)
    try:
        tree.check()
    except ValueError as e:
        raise RunDirError(f"{str(root)!r} is corrupt: {e}") from None
    return tree
