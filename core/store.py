"""The run directory: everything a run needs to resume, written crash-safely.

Layout:
  config.json    resolved config, secrets redacted (written once)
  state.json     status and cumulative usage (atomic rewrite, throttled)
  tree.json      the tree snapshot (atomic rewrite, throttled; no samples inside)
  nodes.jsonl    append-only journal of node updates since the run began; replayed
                 over tree.json on resume, so a lost or damaged snapshot loses nothing
  samples.jsonl  accepted samples, appended per generation call (one write per call)
  slots.jsonl    generation calls that yielded no new sample (so resume skips them)
  verdicts.jsonl the judge's verdict per row (a row whose verdict failed no longer counts)
  rejected.jsonl rows the quality gates turned away before they were stored
  row_vectors.f16 embeddings of the stored rows (semantic dedup), in samples.jsonl's order
  events.jsonl   the event log
  cache.sqlite   the response cache
  dataset.jsonl / dataset.parquet   written when the run completes
Checkpoint cost is proportional to what changed: appends, plus snapshots whose rate is bounded.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .errors import RunDirError
from .files import append_all, atomic_write, check_run_dir, ensure_new_run_dir
from .jsonl import read_records
from .rundir import CONFIG, EVENTS, JOURNAL, LOCK, REJECTED, SAMPLES, SLOTS, SNAPSHOT, STATE, VERDICTS
from .tree import Node, Tree
from .treefile import apply_journal, tree_digest, tree_document

RUN_FORMAT = "treesynth.run/1"


@dataclass
class LeafRecord:
    rows: int = 0
    max_slot: int = -1
    empty_slots: set[int] = field(default_factory=set)


@dataclass
class Recovered:
    """What a run directory holds, as read back on resume."""

    tree: Tree
    seq: int
    leaves: dict[str, LeafRecord]
    keys: set[int]
    rows: int
    state: dict[str, Any]
    warnings: list[str]
    verdicts: dict[str, bool] = field(default_factory=dict)  # row id -> passed (the last verdict)
    unjudged: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # leaf -> its rows with no verdict (judging on)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"gate": ...} of each row a gate turned away


def read_saved_config(root: Path) -> dict[str, Any]:
    """The resolved config a run saved in config.json, or a one-line RunDirError when it is damaged."""
    return read_config_document(root)["config"]


def read_config_document(root: Path) -> dict[str, Any]:
    """The whole of config.json (the config and what is recorded beside it), checked; a one-line
    RunDirError when it is damaged."""
    try:
        d = orjson.loads((Path(root) / CONFIG).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise RunDirError(f"{str(root)!r} is corrupt: config.json is unreadable ({e})") from None
    if not isinstance(d, dict) or d.get("format") != RUN_FORMAT or not isinstance(d.get("config"), dict):
        raise RunDirError(f"{str(root)!r} is corrupt: config.json is not a {RUN_FORMAT} file")
    return d


def verdict_records(root: Path) -> dict[str, dict[str, Any]]:
    """Row id -> its last verdict record (read only: a torn last line is skipped, never cut)."""
    path = Path(root) / VERDICTS
    if not path.exists():
        return {}
    return {v["id"]: v for v in read_records(path, [], repair=False, strict=False) if isinstance(v.get("id"), str)}


def with_verdict(row: dict[str, Any], verdicts: dict[str, dict[str, Any]], judged_only: bool = False) -> dict[str, Any] | None:
    """The row as the dataset has it: None when the judge failed it (or, ``judged_only``, when it has no
    verdict); a judged row carries its verdict as ``judge`` ({"pass": true, ...})."""
    rid = row.get("id")
    v = verdicts.get(rid) if isinstance(rid, str) else None
    if v is None:
        return None if judged_only else row
    if not v.get("pass"):
        return None
    row["judge"] = {k: v[k] for k in ("pass", "constraints", "fits_task", "complete", "judge") if k in v}
    return row


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None
        # append handles, opened on first write
        self._samples: BinaryIO | None = None
        self._slots: BinaryIO | None = None
        self._nodes: BinaryIO | None = None
        self._events: BinaryIO | None = None
        self._extra: dict[str, BinaryIO] = {}  # verdicts.jsonl, rejected.jsonl
        self.seq = 0
        self._tree_dirty = False
        self._last_tree_write = 0.0
        self._snapshot_lock = threading.Lock()
        self._snapshot_seq = -1
        self._append_bytes = 0
        self._snapshot_bytes = 0
        self._held: list[bytes] | None = None  # samples appended inside ``one_write``, not yet written

    # ---- paths -----------------------------------------------------------
    def p(self, name: str) -> Path:
        return self.root / name

    # ---- creation and opening -------------------------------------------
    @classmethod
    def create(cls, root: Path, config: dict[str, Any]) -> RunStore:
        root = Path(root)
        ensure_new_run_dir(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {str(root)!r}: {e.strerror or e}") from None
        s = cls(root)
        s.lock()
        try:
            atomic_write(s.p(CONFIG), orjson.dumps({"format": RUN_FORMAT, "config": config}, option=orjson.OPT_INDENT_2))
            s.write_state({"status": "running", "created": time.time(), "usage": {}})
        except OSError as e:
            raise RunDirError(f"cannot write to run directory {str(root)!r}: {e.strerror or e}") from None
        return s

    @classmethod
    def open(cls, root: Path) -> RunStore:
        root = Path(root)
        check_run_dir(root)
        s = cls(root)
        s.lock()
        return s

    def check_writable(self) -> None:
        """Fail now, with one line, if the run directory cannot be written (a resume writes to it)."""
        probe = self.p(f".write-test{os.getpid()}")
        try:
            with open(probe, "wb") as f:
                f.write(b"ok")
            probe.unlink()
        except OSError as e:
            raise RunDirError(f"cannot write to run directory {str(self.root)!r}: {e.strerror or e}") from None

    def lock(self) -> None:
        try:
            fd = os.open(self.p(LOCK), os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot open run directory {str(self.root)!r}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(f"{str(self.root)!r} is in use by another treesynth process") from None
        self._lock_fd = fd

    def read_config(self) -> dict[str, Any]:
        return read_saved_config(self.root)

    # ---- state -----------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        try:
            d = orjson.loads(self.p(STATE).read_bytes())
            return d if isinstance(d, dict) else {}
        except (OSError, orjson.JSONDecodeError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write(self.p(STATE), orjson.dumps(state, option=orjson.OPT_INDENT_2))

    # ---- recovery --------------------------------------------------------
    def recover(self, size: int, judge: bool = False, earlier: tuple[int, ...] = ()) -> Recovered:
        """Read the run back. ``judge``: collect the rows that have no verdict yet (they are judged
        before their leaf writes more). ``earlier``: totals the run had before an extension
        (core/extend.py); its tree may still hold one, and the resume re-splits it."""
        warnings: list[str] = []
        tree, seq = self._load_tree(warnings, size, earlier)
        leaves: dict[str, LeafRecord] = {}
        keys: set[int] = set()
        rows = 0
        verdicts = self.read_verdicts(warnings)
        unjudged: dict[str, list[dict[str, Any]]] = {}
        for row in self._read_jsonl_repairing(SAMPLES, warnings):
            lid, slot, key = row.get("leaf_id"), row.get("slot"), row.get("_k")
            if not isinstance(lid, str) or not isinstance(slot, int):
                continue
            rec = leaves.setdefault(lid, LeafRecord())
            rec.max_slot = max(rec.max_slot, slot)
            if isinstance(key, int):
                keys.add(key)  # a row the judge failed still may not be written again
            ok = verdicts.get(str(row.get("id")))
            if ok is False:
                continue
            if ok is None and judge:  # counts once the judge passes it
                unjudged.setdefault(lid, []).append(row)
                continue
            rec.rows += 1
            rows += 1
        for row in self._read_jsonl_repairing(SLOTS, warnings):
            lid, slot = row.get("leaf_id"), row.get("slot")
            if isinstance(lid, str) and isinstance(slot, int):
                rec = leaves.setdefault(lid, LeafRecord())
                rec.empty_slots.add(slot)
                rec.max_slot = max(rec.max_slot, slot)
        self.seq = seq
        rejected = [{"gate": r.get("gate")} for r in self._read_jsonl_repairing(REJECTED, warnings)]
        return Recovered(tree, seq, leaves, keys, rows, self.read_state(), warnings, verdicts, unjudged, rejected)

    def read_verdicts(self, warnings: list[str] | None = None) -> dict[str, bool]:
        """Row id -> whether its (last) verdict passed."""
        out: dict[str, bool] = {}
        if not self.p(VERDICTS).exists():
            return out
        for v in self._read_jsonl_repairing(VERDICTS, warnings if warnings is not None else []):
            if isinstance(v.get("id"), str) and isinstance(v.get("pass"), bool):
                out[v["id"]] = v["pass"]
        return out

    def _load_tree(self, warnings: list[str], size: int, earlier: tuple[int, ...] = ()) -> tuple[Tree, int]:
        tree: Tree | None = None
        seq = 0
        tp = self.p(SNAPSHOT)
        if tp.exists():
            try:
                doc, intact = tree_document(orjson.loads(tp.read_bytes()))
                if not intact:
                    raise ValueError("it was changed outside treesynth; edit a run with the steering commands")
                tree, seq = Tree.from_dict(doc)
            except (OSError, ValueError, TypeError, orjson.JSONDecodeError) as e:
                warnings.append(f"tree.json is damaged ({str(e)[:120]}); rebuilt it from nodes.jsonl")
                tree, seq = None, 0
        if tree is not None:
            try:
                return self._replay(tree, seq, size, warnings, earlier)
            except RunDirError as e:  # snapshot and journal disagree: the journal alone is the full history
                warnings.append(f"tree.json does not fit nodes.jsonl ({str(e)[:160]}); rebuilt it from nodes.jsonl")
        return self._replay(Tree.new(size), 0, size, warnings, earlier)

    def _replay(self, tree: Tree, seq: int, size: int, warnings: list[str], earlier: tuple[int, ...] = ()) -> tuple[Tree, int]:
        """Apply the journal entries newer than ``seq`` to ``tree`` and check the result."""
        try:
            seq, applied = apply_journal(tree, seq, self._read_jsonl_repairing(JOURNAL, warnings), strict=True)
        except ValueError as e:
            raise RunDirError(f"{str(self.root)!r} is corrupt: {e}") from None
        try:
            tree.check()
        except ValueError as e:
            raise RunDirError(f"{str(self.root)!r} is corrupt: the tree is inconsistent ({e})") from None
        if tree.root.target != size and tree.root.target not in earlier:
            raise RunDirError(f"{str(self.root)!r} is corrupt: the tree's size ({tree.root.target}) differs from the config's ({size})")
        self._tree_dirty = applied > 0
        return tree, seq

    def _read_jsonl_repairing(self, name: str, warnings: list[str]) -> Iterator[dict[str, Any]]:
        """Complete JSON lines of one of the run's files; a torn last line is cut off, damage before it is an error."""
        return read_records(self.p(name), warnings, repair=True, strict=True)

    # ---- appends ---------------------------------------------------------
    def _open_append(self, name: str) -> BinaryIO:
        return open(self.p(name), "ab", buffering=0)

    def append_samples(self, rows: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        if self._held is not None:
            self._held.append(data)
        else:
            self._write_samples(data)

    def _write_samples(self, data: bytes) -> None:
        if self._samples is None:
            self._samples = self._open_append(SAMPLES)
        append_all(self._samples, data)  # one write: all of it or none (a crash tears at most the last line)
        self._append_bytes += len(data)

    @contextmanager
    def one_write(self) -> Iterator[None]:
        """The rows ``append_samples`` gets inside go to samples.jsonl in one write when it ends, in order (the
        gate pipeline stores an admitted group's calls one by one: one write for the group, not one per call).
        The write raises as any append does, and then none of the held rows is in the file. Nested: the
        outermost writes."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                self._write_samples(b"".join(held))

    def append_empty_slot(self, leaf_id: str, slot: int) -> None:
        if self._slots is None:
            self._slots = self._open_append(SLOTS)
        data = orjson.dumps({"leaf_id": leaf_id, "slot": slot}) + b"\n"
        append_all(self._slots, data)
        self._append_bytes += len(data)

    def append_verdicts(self, records: list[dict[str, Any]]) -> None:
        self._append(VERDICTS, records)

    def append_rejected(self, records: list[dict[str, Any]]) -> None:
        self._append(REJECTED, records)

    def _append(self, name: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        f = self._extra.get(name)
        if f is None:
            f = self._extra[name] = self._open_append(name)
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        append_all(f, data)  # one write: a crash tears at most the last line
        self._append_bytes += len(data)

    def journal_node(self, node: Node) -> None:
        if self._nodes is None:
            self._nodes = self._open_append(JOURNAL)
        self.seq += 1
        data = orjson.dumps({"seq": self.seq, "node": node.to_dict()}) + b"\n"
        append_all(self._nodes, data)
        self._append_bytes += len(data)
        self._tree_dirty = True

    def journal_delete(self, ids: list[str]) -> None:
        if self._nodes is None:
            self._nodes = self._open_append(JOURNAL)
        self.seq += 1
        data = orjson.dumps({"seq": self.seq, "delete": ids}) + b"\n"
        append_all(self._nodes, data)
        self._append_bytes += len(data)
        self._tree_dirty = True

    def append_event(self, event: dict[str, Any]) -> None:
        if self._events is None:
            self._events = self._open_append(EVENTS)
        data = orjson.dumps(event) + b"\n"
        append_all(self._events, data)
        self._append_bytes += len(data)

    @property
    def bytes_written(self) -> int:
        """Bytes appended to the run's files plus tree.json snapshots (checkpoint cost)."""
        return self._append_bytes + self._snapshot_bytes

    def maybe_snapshot(self, tree: Tree, force: bool = False, min_interval: float = 2.0) -> None:
        """Rewrite tree.json if it changed, at most every ``min_interval`` seconds unless forced."""
        job = self.prepare_snapshot(tree, force, min_interval)
        if job is not None:
            self.write_snapshot(*job)

    def prepare_snapshot(self, tree: Tree, force: bool = False, min_interval: float = 2.0) -> tuple[int, bytes] | None:
        """Serialise the tree if a snapshot is due: (seq, bytes) for ``write_snapshot``, else None.

        Serialising must happen while nothing changes the tree (on the engine's loop); the write
        itself (a few MB and an fsync) may then run in a thread while the run goes on.
        """
        now = time.monotonic()
        if not (self._tree_dirty and (force or now - self._last_tree_write >= min_interval)):
            return None
        doc = tree.to_dict(self.seq)
        doc["digest"] = tree_digest(orjson.dumps(doc["nodes"]), doc["seq"])  # detects hand edits
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        self._tree_dirty = False
        self._last_tree_write = now
        return self.seq, data

    def write_snapshot(self, seq: int, data: bytes) -> None:
        """Write a prepared snapshot; thread-safe, and an older one never replaces a newer one."""
        with self._snapshot_lock:
            if seq < self._snapshot_seq:
                return
            try:
                atomic_write(self.p(SNAPSHOT), data)
            except BaseException:
                self._tree_dirty = True  # not on disk: the next snapshot writes it
                raise
            self._snapshot_seq = seq
            self._snapshot_bytes += len(data)  # its own counter: this may run in a thread

    def iter_samples(self, stored: bool = False, judged_only: bool = False) -> Iterator[dict[str, Any]]:
        """The run's rows: those the judge failed are left out, and a judged row carries its verdict
        as ``judge`` ({"pass": true, ...}). ``stored``: every row as appended, verdicts aside.
        ``judged_only``: rows with no verdict are left out too (a judged run's dataset)."""
        path = self.p(SAMPLES)
        if not path.exists():
            return
        verdicts = {} if stored else verdict_records(self.root)
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    try:
                        row = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if verdicts or judged_only:
                        row = with_verdict(row, verdicts, judged_only)
                        if row is None:
                            continue
                    yield row

    def close(self) -> None:
        for f in (self._samples, self._slots, self._nodes, self._events, *self._extra.values()):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._samples = self._slots = self._nodes = self._events = None
        self._extra.clear()
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            except OSError:
                pass
            self._lock_fd = None
