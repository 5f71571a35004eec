"""On-disk response cache (SQLite). Keyed by model, messages, parameters and the sample slot,
so re-running a finished run, or replaying after a crash, makes no LLM calls. An endpoint embedder's
vectors live in the same file (table ``vectors``, float16, keyed by model and text: ``vector_key``),
so they carry over the same way: no text is sent twice."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import RunDirError


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], slot: str) -> str:
    blob = orjson.dumps({"model": model, "messages": messages, "params": params, "slot": slot}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def vector_key(model: str, text: str) -> str:
    """An embedding's key: the model's name as sent to the endpoint (whatever the api base) and the text."""
    blob = orjson.dumps({"embed": model, "text": text})
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class CachedResponse:
    text: str
    finish_reason: str | None
    tokens_in: int
    tokens_out: int


class ResponseCache:
    """Writes are committed in small batches (at most ~0.25 s apart) and on close. One connection, used
    under a lock: the event loop reads and writes responses while a worker thread stores vectors."""

    def __init__(self, path: str | Path, commit_interval: float = 0.25) -> None:
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT,"
                " tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, created REAL NOT NULL)"
            )
            self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL, created REAL NOT NULL)")
        except sqlite3.DatabaseError as e:

            raise RunDirError(f"the response cache {str(self.path)!r} is unusable ({e}); delete it or pass --no-cache") from None
        self._pending = 0
        self._last_commit = time.monotonic()
        self._interval = commit_interval
        self._lock = threading.RLock()

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            row = self.db.execute("SELECT text, finish_reason, tokens_in, tokens_out FROM responses WHERE key=?", (key,)).fetchone()
        return CachedResponse(*row) if row else None

    def put(self, key: str, text: str, finish_reason: str | None, tokens_in: int, tokens_out: int) -> None:
        with self._lock:
            self._put(key, text, finish_reason, tokens_in, tokens_out)

    def _put(self, key: str, text: str, finish_reason: str | None, tokens_in: int, tokens_out: int) -> None:
        # SQLite's own flag, not a shadow of it: a failed write (disk full) can roll the transaction back
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
        self.db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?)", (key, text, finish_reason, tokens_in, tokens_out, time.time())
        )
        self._pending += 1
        if time.monotonic() - self._last_commit >= self._interval or self._pending >= 512:
            self.commit()

    def get_vectors(self, keys: list[str]) -> dict[str, bytes]:
        """The stored vectors (float16 bytes) of those ``keys`` that have one."""
        out: dict[str, bytes] = {}
        for a in range(0, len(keys), 500):
            part = keys[a : a + 500]
            q = f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(part))})"
            with self._lock:
                out.update((k, bytes(v)) for k, v in self.db.execute(q, part))
        return out

    def put_vectors(self, items: list[tuple[str, bytes]]) -> None:
        """Store vectors (float16 bytes); committed like responses (at most ~0.25 s later, and on close)."""
        if not items:
            return
        now = time.time()
        rows = [(k, v, now) for k, v in items]
        with self._lock:
            if not self.db.in_transaction:
                self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?,?,?)", rows)
            self._pending += len(items)
            if time.monotonic() - self._last_commit >= self._interval or self._pending >= 512:
                self.commit()

    def commit(self) -> None:
        with self._lock:
            if self.db.in_transaction:
                self.db.execute("COMMIT")
            self._pending = 0
            self._last_commit = time.monotonic()

    def __len__(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            try:
                self.commit()
            finally:
                self.db.close()
