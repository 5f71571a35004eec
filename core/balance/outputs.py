"""A finished balance run's outputs: the balanced dataset (JSONL + Parquet, each row with its
``provenance`` and leaf path), the ids of dropped rows, the before/after table per leaf and its summary."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from ..export import write_jsonl, write_parquet
from ..files import atomic_write
from ..rundir import BALANCE_SUMMARY, BALANCED, BALANCED_PARQUET, BEFORE_AFTER, DROPPED_IDS
from ..store import RunStore
from ..tree import Tree
from .data import Data
from .plan import LeafPlan, balance_summary


def write_outputs(store: RunStore, data: Data, tree: Tree, leaf_ids: list[str], plan: dict[str, LeafPlan], route_calls: int) -> str:
    """Write every output; returns the balanced JSONL's path."""
    synth_by_leaf: dict[str, list[dict[str, Any]]] = {}
    for row in store.iter_samples():
        synth_by_leaf.setdefault(row["leaf_id"], []).append(row)
    kept: set[int] = set()
    table: list[dict[str, Any]] = []

    def rows() -> Iterator[dict[str, Any]]:
        for lid in leaf_ids:
            path = tree.path(lid)
            p = plan.get(lid, {"before": 0, "keep": [], "synth": 0})
            for i in p["keep"]:
                kept.add(i)
                yield {**data.rows[i], "id": data.ids[i], "leaf_id": lid, "path": path, "provenance": "original"}
            synth = synth_by_leaf.get(lid, [])[: p["synth"]]
            for r in synth:
                yield {"id": r["id"], "leaf_id": lid, "path": r["path"], **{f: r[f] for f in data.fields}, "provenance": "synthesised"}
            table.append({
                "leaf_id": lid, "path": " / ".join(f"{x['dimension']}={x['value']}" for x in path),
                "before": p["before"], "kept": len(p["keep"]), "synthesised": len(synth), "after": len(p["keep"]) + len(synth),
            })

    dest = store.p(BALANCED)
    write_jsonl(rows(), dest)
    write_parquet(dest, store.p(BALANCED_PARQUET))
    dropped = [data.ids[i] for i in range(len(data)) if i not in kept]
    atomic_write(store.p(DROPPED_IDS), ("\n".join(dropped) + ("\n" if dropped else "")).encode())
    before_total = sum(t["before"] for t in table) or 1
    after_total = sum(t["after"] for t in table) or 1
    for t in table:
        t["share_before"] = round(t["before"] / before_total, 6)
        t["share_after"] = round(t["after"] / after_total, 6)
    tmp = store.p(f".{BEFORE_AFTER}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0].keys()) if table else ["leaf_id"])
        w.writeheader()
        w.writerows(table)
    tmp.replace(store.p(BEFORE_AFTER))
    atomic_write(store.p(BALANCE_SUMMARY), json.dumps(balance_summary(table, len(data), len(dropped), route_calls), indent=2).encode())
    return str(dest)
