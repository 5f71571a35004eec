"""Where the data's rows are in the tree: the rows at each node, the rows each node took as pivots,
and the data's embeddings. Routing is checkpointed (routes.jsonl) and the embeddings cached
(embeddings.npy), so a resumed balance run neither routes nor embeds twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import orjson

from ..jsonl import read_records
from ..rundir import EMBEDDINGS, ROUTES
from ..store import RunStore
from .data import Data

if TYPE_CHECKING:
    import numpy as np


class RowIndex:
    def __init__(self, store: RunStore, data: Data, embed: Callable[[list[str]], Any]) -> None:
        self.store = store
        self.data = data
        self.embed = embed
        self.rows_at: dict[str, list[int]] = {"0": list(range(len(data)))}
        self.pivot_rows: dict[str, list[int]] = {}
        self._emb: np.ndarray | None = None
        self._emb_lock = threading.Lock()
        self._routes: IO[bytes] | None = None
        for rec in read_records(store.p(ROUTES), repair=True):
            for cid, idx in rec.get("children", {}).items():
                self.rows_at[cid] = idx
            if "pivots" in rec:
                self.pivot_rows[rec["node"]] = rec["pivots"]

    def at(self, node_id: str) -> list[int]:
        """The rows routed to a node (all rows at the root)."""
        return self.rows_at.get(node_id, [])

    @property
    def emb(self) -> np.ndarray:
        """The data's unit embeddings, one row each (computed once, then read from the run directory)."""
        with self._emb_lock:  # the fallback split may ask from a thread while routing asks from another
            if self._emb is None:
                self._emb = self._load_emb()
            return self._emb

    def _load_emb(self) -> np.ndarray:
        import numpy as np

        cache = self.store.p(EMBEDDINGS)
        if cache.exists():
            try:
                arr = np.load(cache)
                if arr.shape[0] == len(self.data):
                    return arr
            except (OSError, ValueError):
                pass
        emb = self.embed([self.data.text(i) for i in range(len(self.data))])
        tmp = cache.with_name(".embeddings.tmp.npy")
        np.save(tmp, emb)
        tmp.replace(cache)
        return emb

    def save_route(self, node_id: str, children: dict[str, list[int]]) -> None:
        """Record where a node's rows went (and its pivots), and hold it for its children."""
        self.rows_at.update(children)
        if self._routes is None:
            self._routes = open(self.store.p(ROUTES), "ab", buffering=0)
        self._routes.write(orjson.dumps({"node": node_id, "pivots": self.pivot_rows.get(node_id, []), "children": children}) + b"\n")

    def close(self) -> None:
        if self._routes is not None:
            self._routes.close()
            self._routes = None
