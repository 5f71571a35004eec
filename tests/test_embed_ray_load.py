"""RayRowEmbedder's actor choice (core/quality/embed_ray.py) without a Ray cluster: stand-in actors whose calls
the test finishes. The real actors are tested in tests/test_ray.py."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from treesynth.core.errors import EmbedderError
from treesynth.core.quality.embed_ray import RayRowEmbedder


class _RayError(Exception):
    pass


class _Remote:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def remote(self, texts):
        fut = asyncio.get_running_loop().create_future()
        self.calls.append((texts, fut))
        return fut


class _Actor:
    def __init__(self) -> None:
        self.calls: list = []
        self.embed = _Remote(self.calls)


class _Lease:
    def __init__(self) -> None:
        self.ray = SimpleNamespace(exceptions=SimpleNamespace(RayError=_RayError), kill=lambda a, no_restart=True: None)
        self.released = False

    def release(self) -> None:
        self.released = True


def _embedder(n: int) -> tuple[RayRowEmbedder, list[_Actor]]:
    emb = RayRowEmbedder("all-MiniLM-L6-v2", workers=n)
    actors = [_Actor() for _ in range(n)]
    emb._pool, emb._actors, emb._load = _Lease(), list(actors), [0] * n  # as _ensure leaves them
    return emb, actors


def test_calls_in_flight_spread_over_the_actors_and_their_counts_come_back_to_zero():
    async def main():
        emb, actors = _embedder(2)
        tasks = [asyncio.ensure_future(emb.embed([f"t{i}"])) for i in range(4)]
        await asyncio.sleep(0)
        assert [len(a.calls) for a in actors] == [2, 2] and emb._load == [2, 2]
        for a in actors:
            for _, fut in a.calls:
                fut.set_result(np.ones((1, 3), dtype=np.float32))
        await asyncio.gather(*tasks)
        assert emb._load == [0, 0]
        actors[0].calls.clear()
        t = asyncio.ensure_future(emb.embed(["x"]))
        await asyncio.sleep(0)
        actors[0].calls[0][1].set_exception(_RayError("worker died"))
        with pytest.raises(EmbedderError, match="the Ray embedder failed: _RayError: worker died"):
            await t
        assert emb._load == [0, 0]

    asyncio.run(main())


def test_closing_while_a_call_is_in_flight_raises_no_index_error():
    """close() starts the counts afresh; a call in flight then finishing used to index the emptied list."""

    async def main():
        emb, actors = _embedder(2)
        t = asyncio.ensure_future(emb.embed(["a"]))
        await asyncio.sleep(0)
        emb.close()
        actors[0].calls[0][1].set_result(np.ones((1, 3), dtype=np.float32))
        assert (await t).shape == (1, 3)
        assert emb._load == [] and emb._actors == []

    asyncio.run(main())


def test_the_counts_hold_when_the_event_loop_and_worker_threads_pick_side_by_side():
    emb, _ = _embedder(3)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def churn() -> None:
        start.wait()
        try:
            for _ in range(20_000):
                _, load, i = emb._take()
                emb._put(load, i)
        except BaseException as e:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and emb._load == [0, 0, 0]
