"""``treesynth extend RUN_DIR --size N``: a finished (or interrupted) run asked for more rows, on the same tree,
in the same run directory.

Extending is recording the new total in the run's config.json (its ``size``, and the history of sizes
under ``extended``), then resuming: the resume finds a tree whose root still holds an earlier total,
re-splits the quotas for the new one (core/resplit.py) and journals them, and the engine fills the
leaves as on any resume. config.json is rewritten atomically before anything else changes, so a kill -9
at any point leaves either the old run or an extension that ``extend`` again (or ``run --resume``)
carries on; rows already written are never touched (samples.jsonl is append-only)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, RunDirError
from .files import atomic_write
from .rundir import CONFIG
from .store import RunStore, read_config_document

EXTENDED = "extended"  # config.json's key: [{"from": 20, "to": 50, "at": <unix time>}, ...]


def extensions(root: Path) -> list[dict[str, Any]]:
    """The run's extensions, oldest first (empty for a run never extended)."""
    try:
        d = orjson.loads((Path(root) / CONFIG).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    ext = d.get(EXTENDED) if isinstance(d, dict) else None
    return [e for e in ext if isinstance(e, dict)] if isinstance(ext, list) else []


def earlier_sizes(root: Path) -> tuple[int, ...]:
    """The totals the run had before its extensions: its tree may still hold one of them (an extension
    interrupted before its re-split was journaled); the resume then re-splits it."""
    return tuple(int(e["from"]) for e in extensions(root) if isinstance(e.get("from"), int))


def check_extendable(run_dir: Path) -> None:
    """One line (``ConfigError``) for a run whose mode cannot be extended (a balance run): what a front end
    asks before offering to extend a run, and what ``record_extension`` checks first."""
    from .modes import mode_class, recorded_mode

    mode = mode_class(recorded_mode(Path(run_dir)))
    if not mode.extendable:
        raise ConfigError(f"{str(run_dir)!r} is a {mode.kind} run; treesynth extend works on runs made by treesynth run")


def record_extension(run_dir: Path, size: int) -> int:
    """Record ``size`` as the run's new total; returns the size it had. One line (``ConfigError``, exit 2)
    for a size not larger than the run's; asking again for the size of the run's last extension is
    allowed: it carries an interrupted extension on, or (finished) makes no calls. A run in use, a
    directory that is not a run, or a run of another mode (a balance run): one line too."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)  # one line for a missing directory, not a run, or a run in use
    try:
        store.check_writable()
        check_extendable(run_dir)
        doc = read_config_document(run_dir)
        current = doc["config"].get("size")
        if not isinstance(current, int) or isinstance(current, bool) or current < 1:
            raise RunDirError(f"{str(run_dir)!r} is corrupt: its config.json has no size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"--size must be a positive integer, not {size!r}")
        done = extensions(run_dir)
        if size == current and done and done[-1].get("to") == size:
            return int(done[-1].get("from", current))  # the same extension again: carried on, or nothing to do
        if size <= current:
            raise ConfigError(f"--size {size} is not larger than the run's size ({current}): extend only adds rows")
        doc["config"]["size"] = size
        doc[EXTENDED] = [*done, {"from": current, "to": size, "at": round(time.time(), 3)}]
        atomic_write(store.p(CONFIG), orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        return current
    finally:
        store.close()
