"""``--embedder ray``: the gates' vectors made by the local model on Ray actors (the run's cluster,
``--ray-address``; a local instance when none is given).

Each actor loads the same embedder the report's Ray Data pipeline uses (``core.embeddings.Embedder``,
fp32, one per worker, its threads set to the CPUs the actor reserved), so its vectors are the local
model's: a run may switch between ``local`` and ``ray`` on resume (core/embedder_choice.py). The gate
pipeline (core/quality/pipeline.py) keeps one batch in flight per actor; a batch goes to the
least-loaded actor and comes back as float32 unit vectors. An actor that dies is restarted by Ray and
its batch retried (``max_task_retries``); what Ray still reports becomes one ``EmbedderError`` line.

Ray is an optional extra, imported only when the embedder is first used.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import EmbedderError, first_line
from .embedder import RowEmbedder

if TYPE_CHECKING:
    import numpy as np

    from ..llm.transports.ray import PoolLease

STARTUP_TIMEOUT_S = float(os.environ.get("TREESYNTH_RAY_STARTUP_TIMEOUT", "180"))


class _EmbedWorker:
    """One Ray actor: the local model, loaded once."""

    def __init__(self, model_path: str | None, threads: int) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        from ..embeddings import Embedder

        self.emb = Embedder(model_path, precision="fp32", cache=False, threads=threads)
        self.rows = 0

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        self.rows += len(texts)
        return np.asarray(self.emb.encode(list(texts)), dtype=np.float32)

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "rows": self.rows}


class RayRowEmbedder(RowEmbedder):
    """The local model on ``workers`` Ray actors (default: ``cfg.ray_workers``, else one per ``threads`` CPUs of
    the cluster; ``parallel`` grows to that number once they have started), each reserving ``threads`` CPUs. Started on first use; ``close`` kills the actors and, when
    this process started Ray and nothing else still uses it, shuts it down."""

    kind = "ray"
    batch_rows = 128

    def __init__(
        self, model: str, path: str | None = None, *, address: str | None = None, workers: int | None = None, threads: int = 1,
        max_task_retries: int = 3,
    ) -> None:
        super().__init__(model)
        self.path = path
        self.address = address
        self.workers = workers
        self.threads = max(1, int(threads))
        self.max_task_retries = max_task_retries
        self._actors: list[Any] = []
        self._load: list[int] = []
        self._pool: PoolLease | None = None  # while the actors live
        self._lock = threading.Lock()  # the pool starts once, from whichever thread embeds first
        self.parallel = max(1, workers or 1)

    # ---- pool ----------------------------------------------------------------
    def _ensure(self) -> None:
        with self._lock:
            if self._actors:
                return
            from ..llm.transports.ray import PoolLease

            lease = PoolLease(self.address)
            ray = lease.ray
            try:
                total = float(ray.cluster_resources().get("CPU", 1.0))
                n = self.workers or max(1, int(total // self.threads))
                cls = ray.remote(_EmbedWorker)
                opts = {"num_cpus": self.threads, "max_restarts": -1, "max_task_retries": self.max_task_retries, "scheduling_strategy": "SPREAD"}
                actors = [cls.options(**opts).remote(self.path, self.threads) for _ in range(n)]
                try:
                    ray.get([a.ready.remote() for a in actors], timeout=STARTUP_TIMEOUT_S)
                except ray.exceptions.GetTimeoutError:
                    for a in actors:
                        ray.kill(a, no_restart=True)
                    raise EmbedderError(
                        f"{n} Ray embedding worker(s) did not start within {STARTUP_TIMEOUT_S:g} s; each reserves {self.threads} CPU "
                        f"(the cluster has {total:g}): lower --ray-workers"
                    ) from None
                except ray.exceptions.RayError as e:
                    for a in actors:
                        ray.kill(a, no_restart=True)
                    raise EmbedderError(f"Ray embedding workers failed to start: {type(e).__name__}: {first_line(e, 240)}") from None
            except BaseException:
                lease.release()
                raise
            self._pool = lease
            self._actors = actors
            self._load = [0] * n
            self.parallel = n

    def _take(self) -> tuple[Any, list[int], int]:
        """The actor with the fewest texts in flight, counted as one more (under the lock: the event loop's
        ``embed`` and worker threads' ``embed_blocking`` pick side by side): (actor, the counts, its index)."""
        with self._lock:
            if not self._actors:
                raise EmbedderError("the Ray embedder is closed")
            load = self._load
            i = min(range(len(load)), key=load.__getitem__)
            load[i] += 1
            return self._actors[i], load, i

    def _put(self, load: list[int], i: int) -> None:
        with self._lock:
            if load is self._load:  # not closed meanwhile (close starts the counts afresh)
                load[i] -= 1

    def _failed(self, e: BaseException) -> EmbedderError:
        return EmbedderError(f"the Ray embedder failed: {type(e).__name__}: {first_line(e, 240)}")

    # ---- RowEmbedder ---------------------------------------------------------
    async def embed(self, texts: Sequence[str], *, fresh: bool = False) -> np.ndarray:
        if not self._actors:
            await asyncio.to_thread(self._ensure)
        assert self._pool is not None
        ray = self._pool.ray
        actor, load, i = self._take()
        try:
            return await actor.embed.remote(list(texts))
        except ray.exceptions.RayError as e:
            raise self._failed(e) from None
        finally:
            self._put(load, i)

    def embed_blocking(self, texts: list[str]) -> np.ndarray:
        self._ensure()
        assert self._pool is not None
        ray = self._pool.ray
        actor, load, i = self._take()
        try:
            return ray.get(actor.embed.remote(list(texts)))
        except ray.exceptions.RayError as e:
            raise self._failed(e) from None
        finally:
            self._put(load, i)

    def stats(self) -> list[dict[str, Any]]:
        if self._pool is None:
            return []
        return self._pool.ray.get([a.stats.remote() for a in self._actors], timeout=60)

    def close(self) -> None:
        with self._lock:
            lease, actors = self._pool, self._actors
            self._pool, self._actors, self._load = None, [], []
        if lease is None:
            return
        for a in actors:
            try:
                lease.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - best effort
                pass
        lease.release()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
