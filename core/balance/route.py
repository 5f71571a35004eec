"""Routing: every row at a split node goes to exactly one child. Pivots go where the model classified
them; the rest by the LLM (``--route llm``: batched, structured, validated; a row it cannot place goes by
embedding similarity), by embedding similarity to each value's label and pivots (``--route embed``), or
to its nearest cluster centroid when the split itself came from clusters."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..clusters import is_fallback_dimension
from ..partition import PartitionError, Split
from ..prompts import Prompts, sample_text
from ..tree import Node
from .fallback import RowClusters
from .rows import RowIndex

if TYPE_CHECKING:
    import numpy as np

    from ..engine.mode import EngineAccess


def validate_route(obj: Any, n_rows: int, n_values: int) -> list[int]:
    """A routing answer: {"labels": [value number per row, in order]} -> 0-based value indices."""
    if not isinstance(obj, dict) or not isinstance(obj.get("labels"), list):
        raise PartitionError("the answer must be an object with a 'labels' list")
    labels = obj["labels"]
    if len(labels) != n_rows:
        raise PartitionError(f"give exactly {n_rows} labels, one per row, in order (got {len(labels)})")
    out = []
    for i, x in enumerate(labels):
        if isinstance(x, str) and x.strip().isdigit():
            x = int(x.strip())
        if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= n_values:
            raise PartitionError(f"label {i + 1} must be a value number from 1 to {n_values}")
        out.append(x - 1)
    return out


def route_schema(n_rows: int, n_values: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "labels": {"type": "array", "minItems": n_rows, "maxItems": n_rows, "items": {"type": "integer", "minimum": 1, "maximum": n_values}}
        },
        "required": ["labels"],
        "additionalProperties": False,
    }


class Router:
    def __init__(self, rows: RowIndex, clusters: RowClusters, prompts: Prompts, method: str, batch: int) -> None:
        self.rows = rows
        self.clusters = clusters
        self.prompts = prompts
        self.method = method  # "llm" or "embed"
        self.batch = batch
        self.calls = 0  # LLM routing calls made (reported in the balance summary)

    async def route(self, engine: EngineAccess, node: Node, split: Split, children: list[Node]) -> None:
        """Send the node's rows to its children; each child's target becomes its row count."""
        import numpy as np

        await asyncio.to_thread(lambda: self.rows.emb)  # embed the data once, off the event loop
        rows = self.rows.at(node.id)
        assign: dict[int, int] = {}
        piv = self.rows.pivot_rows.get(node.id, [])
        child_of_value = {c.value: j for j, c in enumerate(children)}
        for v in split.values:  # pivots go where the classification put them
            for i in v.pivots:
                if i < len(piv) and v.value in child_of_value:
                    assign[piv[i]] = child_of_value[v.value]
        rest = [r for r in rows if r not in assign]
        if children[0].values:  # one open-ended child: everything goes there
            assign.update({r: 0 for r in rest})
            rest = []
        if rest and is_fallback_dimension(split.dimension):  # the split came from clusters: nearest centroid
            sims = self.rows.emb[rest] @ self.clusters.centroids(node).T
            assign.update({r: int(j) for r, j in zip(rest, np.argmax(sims, axis=1), strict=True)})
            rest = []
        if rest and self.method == "llm":
            assign.update(await self._route_llm(engine, node, split, children, rest))
            rest = [r for r in rest if r not in assign]
        if rest:
            sims = self.rows.emb[rest] @ self._prototypes(split, children).T
            for r, j in zip(rest, np.argmax(sims, axis=1), strict=True):
                assign[r] = int(j)
        groups: dict[str, list[int]] = {c.id: [] for c in children}
        for r in rows:
            groups[children[assign[r]].id].append(r)
        for c in children:
            c.target = len(groups[c.id])
        self.rows.save_route(node.id, groups)

    def _prototypes(self, split: Split, children: list[Node]) -> np.ndarray:
        """One unit vector per child: its value label and the pivots classified into it."""
        import numpy as np

        labels = self.rows.embed([f"{split.dimension}: {c.value}" for c in children])
        piv = self.rows.pivot_rows.get(children[0].parent or "", [])
        protos = []
        for j, c in enumerate(children):
            vecs = [labels[j]]
            for v in split.values:
                if v.value == c.value:
                    vecs += [self.rows.emb[piv[i]] for i in v.pivots if i < len(piv)]
            m = np.mean(vecs, axis=0)
            protos.append(m / (np.linalg.norm(m) or 1.0))
        return np.stack(protos)

    async def _route_llm(self, engine: EngineAccess, node: Node, split: Split, children: list[Node], rest: list[int]) -> dict[int, int]:
        values = [c.value or "" for c in children]
        data = self.rows.data
        out: dict[int, int] = {}

        async def one(b: int, chunk: list[int]) -> None:
            listing = "\n".join(f"[{k + 1}] {sample_text(data.sample(r), 400)}" for k, r in enumerate(chunk))
            vals = "\n".join(f"{j + 1}. {v}" for j, v in enumerate(values))
            msgs = [
                {"role": "system", "content": self.prompts.system},
                {"role": "user", "content": self.prompts.render_route(path=engine.tree.path(node.id), dimension=split.dimension, values=vals, rows=listing, n=len(chunk))},
            ]
            labels, _err = await engine.ask(
                node, f"route{b}", msgs, route_schema(len(chunk), len(values)),
                lambda obj: validate_route(obj, len(chunk), len(values)), 0.0,
            )
            self.calls += 1
            if labels is not None:
                out.update(zip(chunk, labels, strict=True))
            else:
                engine.warn(f"node {node.id}: {len(chunk)} rows could not be routed by the LLM; routed by embedding similarity", node.id)

        chunks = [rest[i : i + self.batch] for i in range(0, len(rest), self.batch)]
        await asyncio.gather(*(one(b, c) for b, c in enumerate(chunks)))
        return out
