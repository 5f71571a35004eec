"""Where a reused tree comes from (``--tree-from SOURCE``): a run directory (its tree: snapshot and
journal), a ``tree.json``, or a taxonomy file in YAML or JSON (core/taxonomy.py), each read as a taxonomy
document; and the copy a run keeps of it, so a resume takes the same splits whatever became of the source.
Every problem is one line (``ConfigError``) naming the source, raised before a run directory is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, RunDirError
from .files import atomic_write
from .rundir import CONFIG, GIVEN_TREE
from .store import read_saved_config
from .taxonomy import Taxonomy, TaxonomyError, parse_taxonomy, taxonomy_defaults, taxonomy_document
from .tree import TREE_FORMAT, Tree
from .treefile import load_tree_readonly, tree_document

GIVEN_FORMAT = "treesynth.given-tree/1"


def _fail(source: str, problem: str) -> ConfigError:
    return ConfigError(" ".join(f"--tree-from {source}: {problem}".split()))  # one line, whatever the path holds


def _run_header(root: Path) -> dict[str, Any]:
    """task, fields and depth of the run in ``root``, as a taxonomy document's header."""
    cfg = read_saved_config(root)
    return {k: cfg[k] for k in ("task", "fields", "depth") if cfg.get(k) is not None}


def _from_tree(tree: Tree, header: dict[str, Any]) -> dict[str, Any]:
    fields = header.get("fields")
    return taxonomy_document(tree, task=header.get("task"), fields=list(fields) if fields else None, depth=header.get("depth"))


def _parse_file(path: Path) -> Any:
    data = path.read_bytes()
    if path.suffix.lower() == ".json":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise TaxonomyError(f"not valid JSON ({e})") from None
    import yaml

    try:
        return yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise TaxonomyError("not a text file (UTF-8)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise TaxonomyError(f"not valid YAML ({getattr(e, 'problem', None) or type(e).__name__}{where})") from None


def read_tree_source(source: str) -> dict[str, Any]:
    """The taxonomy document of ``source``: a run directory, a tree.json (with its run's task, fields and
    depth when it sits in one) or a taxonomy file. Not yet checked against a run's settings."""
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            if not (path / CONFIG).is_file():
                raise TaxonomyError(f"a directory, but not a treesynth run (no {CONFIG})")
            return _from_tree(load_tree_readonly(path), _run_header(path))
        if not path.is_file():
            raise TaxonomyError("no such run directory or file")
        doc = _parse_file(path)
        if isinstance(doc, dict) and doc.get("format") == TREE_FORMAT:  # a run's tree.json
            tree, _seq = Tree.from_dict(tree_document(doc)[0])
            header = _run_header(path.parent) if (path.parent / CONFIG).is_file() else {}
            return _from_tree(tree, header)
        if not isinstance(doc, dict):
            raise TaxonomyError("expected a mapping with a 'tree' at the top level")
        return doc
    except (TaxonomyError, RunDirError) as e:
        raise _fail(source, str(e)) from None
    except OSError as e:
        raise _fail(source, f"cannot read it ({e.strerror or e})") from None
    except (ValueError, TypeError) as e:  # a damaged tree.json
        raise _fail(source, f"not a valid tree ({e})") from None


def tree_source_defaults(source: str) -> dict[str, Any]:
    """The run settings the source carries (task, fields, depth), for a config that does not set them."""
    try:
        return taxonomy_defaults(read_tree_source(source))
    except TaxonomyError as e:
        raise _fail(source, str(e)) from None


def load_given_tree(source: str, *, task: str, fields: tuple[str, ...], depth: int) -> tuple[dict[str, Any], Taxonomy]:
    """The source's document and its splits, checked against the run's settings (one-line ConfigError)."""
    doc = read_tree_source(source)
    try:
        return doc, parse_taxonomy(doc, task=task, fields=fields, depth=depth)
    except TaxonomyError as e:
        raise _fail(source, str(e)) from None


def save_given_tree(root: Path, source: str, doc: dict[str, Any]) -> None:
    """Keep the given tree in the run directory (the source may change or go; a resume reads this)."""
    atomic_write(Path(root) / GIVEN_TREE, orjson.dumps({"format": GIVEN_FORMAT, "source": source, "taxonomy": doc}, option=orjson.OPT_INDENT_2))


def saved_given_tree(root: Path, *, task: str, fields: tuple[str, ...], depth: int) -> Taxonomy:
    """The splits a run was given, from its directory (one-line RunDirError when the copy is gone or damaged)."""
    p = Path(root) / GIVEN_TREE
    try:
        d = orjson.loads(p.read_bytes())
        if not isinstance(d, dict) or d.get("format") != GIVEN_FORMAT:
            raise ValueError(f"not a {GIVEN_FORMAT} file")
        return parse_taxonomy(d.get("taxonomy"), task=task, fields=fields, depth=depth)
    except FileNotFoundError:
        raise RunDirError(f"{str(root)!r} is corrupt: it was made with --tree-from but has no {GIVEN_TREE}") from None
    except (OSError, ValueError) as e:
        raise RunDirError(f"{str(root)!r} is corrupt: {GIVEN_TREE} is invalid ({' '.join(str(e).split())[:300]})") from None
