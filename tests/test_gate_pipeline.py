"""The gate pipeline (core/quality/pipeline.py): semantic dedup runs beside generation. Rows from many
calls are embedded in one batch, generation goes on while rows wait for their vectors, the queue is
bounded, the display sees rows in the gates, and size and resume stay exact."""

from __future__ import annotations

import asyncio
import json
from contextlib import nullcontext

import numpy as np
import pytest

from tests.conftest import read_jsonl
from tests.fakes import ScriptedTransport, hash_embedder
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.progress import Progress, status_line
from treesynth.core.quality.embedder import RowEmbedder
from treesynth.core.run import Run


def _cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 120, "pivots": 6,
             "samples_per_call": 5, "concurrency": 32, "dedup_threshold": 0.95}
    flags.update(kw)
    return build_config(flags=flags)


class HeldEmbedder(RowEmbedder):
    """Hash vectors, after ``release`` is set; records each batch's size."""

    kind = "test"

    def __init__(self, held: bool = True, batch_rows: int = 256) -> None:
        super().__init__("hash")
        self.batch_rows = batch_rows
        self.batches: list[int] = []
        self.release = asyncio.Event()
        if not held:
            self.release.set()

    async def embed(self, texts, *, fresh=False):
        await self.release.wait()
        assert fresh  # new rows: their vectors go to row_vectors.f16, an embedder's content cache is left out
        self.batches.append(len(texts))
        return np.asarray(hash_embedder(list(texts)), dtype=np.float32)


class KeepAllIndex:
    """A dedup stand-in that keeps every row (the pipeline's own logic under test)."""

    async def ensure_open(self, dim, embedder=None):
        return None

    async def admit_async(self, X):
        return np.ones(len(X), dtype=bool), np.zeros(len(X), dtype=np.float32)

    def one_write(self):
        return nullcontext()


def _item(k):
    """Call ``k``'s five rows, waiting for the gates."""
    from treesynth.core.quality.pipeline import GateItem

    return GateItem("0/1", k, [], [({"q": f"{k}-{j}"}, k * 10 + j, j) for j in range(5)], [f"text {k} {j}" for j in range(5)])


@pytest.fixture(params=["in-process", "own-process"])
def index_where(request, monkeypatch):
    """The index in the run's process (small runs) or in a process of its own (``PROCESS_MIN_ROWS``: large runs)."""
    from treesynth.core.quality import dedup

    monkeypatch.setattr(dedup, "PROCESS_MIN_ROWS", 10**9 if request.param == "in-process" else 0)
    made: list[object] = []  # the index processes started: one per run in the own-process case

    class Counted(dedup.IndexProcess):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(dedup, "IndexProcess", Counted)
    return request.param, made


def test_rows_of_many_calls_are_embedded_together_and_the_size_is_exact(tmp_path, index_where):
    emb = HeldEmbedder(held=False)
    t = ScriptedTransport()
    run = Run.create(_cfg(), tmp_path / "r", transport=t, embed=emb)
    fin = asyncio.run(run.execute(lambda e: None))
    assert fin.status == "complete" and fin.rows == 120
    rows = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert len(rows) == 120 and len({r["id"] for r in rows}) == 120
    assert max(emb.batches) > 5  # one call writes 5 rows: a bigger batch holds several calls' rows
    from treesynth.core.neardup import VectorLog

    log = VectorLog(tmp_path / "r" / "row_vectors.f16", 64)
    assert len(log.read()) == len(read_jsonl(tmp_path / "r" / "samples.jsonl"))  # a vector per stored row, in order
    log.close()
    where, made = index_where
    assert len(made) == (where == "own-process") and all(p._proc is None for p in made)  # started, then closed


def test_a_large_run_starts_its_index_process_as_it_starts_and_gates_with_it(tmp_path, monkeypatch):
    """The index's process is started before any row is gated (``prestart``: its imports overlap the tree's growth)
    and is the one the index then uses; it has ended once the run is closed."""
    from treesynth.core.quality import dedup

    monkeypatch.setattr(dedup, "PROCESS_MIN_ROWS", 0)
    spawned: list[object] = []
    used: list[object] = []
    real_spawn = dedup.spawn
    monkeypatch.setattr(dedup, "spawn", lambda: (spawned.append(real_spawn()), spawned[-1])[1])

    class Seen(dedup.IndexProcess):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            used.append(self._proc)

    monkeypatch.setattr(dedup, "IndexProcess", Seen)
    embedded_before: list[int] = []
    emb = HeldEmbedder(held=False)
    run = Run.create(_cfg(), tmp_path / "r", transport=ScriptedTransport(), embed=emb)
    fin = asyncio.run(run.execute(lambda e: embedded_before.append(len(emb.batches)) if not spawned else None))
    run.close()
    assert fin.status == "complete" and fin.rows == 120
    assert embedded_before and embedded_before[-1] == 0  # started before the first row was embedded
    assert len(spawned) == 1 and used == spawned  # one process: the one started early
    assert spawned[0].wait(timeout=10) == 0


def test_a_large_runs_endpoint_embedder_works_through_its_worker_process(tmp_path, monkeypatch):
    """A large run (``PROCESS_MIN_ROWS``) sends its embedding requests through a worker process
    (core/quality/embed_worker.py), started as the run starts: the stored vectors are the server's, one per row, and
    the requests are counted in the run's process; the worker has ended once the run is closed."""
    from tests.embed_server import FakeEmbeddings, vector_of
    from treesynth.core.neardup import VectorLog
    from treesynth.core.quality import dedup, embed_worker
    from treesynth.core.quality.embed_endpoint import EndpointRowEmbedder

    monkeypatch.setattr(dedup, "PROCESS_MIN_ROWS", 0)
    started: list[object] = []
    real = embed_worker.EmbedWorker.__init__
    monkeypatch.setattr(embed_worker.EmbedWorker, "__init__", lambda self, *a, **k: (started.append(self), real(self, *a, **k))[1])
    with FakeEmbeddings(dim=64) as srv:
        emb = EndpointRowEmbedder("openai/emb-small", srv.url, price=None)
        run = Run.create(_cfg(), tmp_path / "r", transport=ScriptedTransport(), embed=emb)
        fin = asyncio.run(run.execute(lambda e: None))
        run.close()
    assert fin.status == "complete" and fin.rows == 120
    assert len(started) == 1 and started[0]._proc is None  # one worker, closed with the run
    stored = read_jsonl(tmp_path / "r" / "samples.jsonl")
    log = VectorLog(tmp_path / "r" / "row_vectors.f16", 64)
    V = log.read().astype(np.float32)
    log.close()
    E = np.stack([vector_of(f"{r['question']} {r['answer']}", 64) for r in stored]).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    assert len(V) == len(stored) and np.allclose(V, E, atol=1e-3)
    assert emb.usage.embed_texts >= len(stored) and emb.usage.embed_requests == len(srv.requests) >= 1


def test_a_started_index_process_nobody_used_ends_with_the_dedup(tmp_path):
    from treesynth.core.quality.dedup import SemanticDedup

    d = SemanticDedup(hash_embedder, 0.9, tmp_path / "v.f16", expected_rows=10**6)
    d.prestart()
    spare = d._spare
    assert spare is not None and spare.poll() is None
    d.close()
    assert spare.wait(timeout=10) == 0
    small = SemanticDedup(hash_embedder, 0.9, tmp_path / "w.f16", expected_rows=100)
    small.prestart()  # a small run's index lives in its own process: nothing to start
    assert small._spare is None
    small.close()


def test_an_index_process_that_ended_before_it_was_used_is_replaced(tmp_path):
    from treesynth.core.neardup_process import IndexProcess, spawn

    early = spawn()
    early.kill()
    early.wait()
    p = IndexProcess(64, 0.9, process=early)
    try:
        assert p._proc is not early
        keep, _ = p.admit(np.asarray(hash_embedder(["a b c", "d e f"]), dtype=np.float32))
        assert keep.all()
    finally:
        p.close()
    for f in (early.stdin, early.stdout):
        f.close()


def test_a_batch_of_many_calls_appends_its_vectors_in_one_write(tmp_path, monkeypatch):
    from treesynth.core.neardup import VectorLog

    writes: list[int] = []
    real = VectorLog.append
    monkeypatch.setattr(VectorLog, "append", lambda self, X: (writes.append(len(X)), real(self, X))[1])
    emb = HeldEmbedder(held=False)
    fin = asyncio.run(Run.create(_cfg(), tmp_path / "r", transport=ScriptedTransport(), embed=emb).execute(lambda e: None))
    assert fin.status == "complete" and sum(writes) == len(read_jsonl(tmp_path / "r" / "samples.jsonl"))
    assert len(writes) <= len(emb.batches) < fin.rows // 5  # one append per gated batch, not one per call


def test_a_batch_of_many_calls_writes_its_rows_in_one_write(tmp_path, monkeypatch):
    """An admitted group's rows go to samples.jsonl in one write (one per call cost the event loop 20,000
    writes at 100k rows), in order, with a vector per row."""
    from treesynth.core.neardup import VectorLog
    from treesynth.core.store import RunStore

    writes: list[int] = []
    real = RunStore._write_samples
    monkeypatch.setattr(RunStore, "_write_samples", lambda self, data: (writes.append(data.count(b"\n")), real(self, data))[1])
    emb = HeldEmbedder(held=False)
    fin = asyncio.run(Run.create(_cfg(), tmp_path / "r", transport=ScriptedTransport(), embed=emb).execute(lambda e: None))
    stored = read_jsonl(tmp_path / "r" / "samples.jsonl")
    assert fin.status == "complete" and sum(writes) == len(stored) >= fin.rows
    assert len(writes) <= len(emb.batches) < fin.rows // 5  # one write per admitted group, not one per call
    log = VectorLog(tmp_path / "r" / "row_vectors.f16", 64)
    vectors = log.read()
    log.close()
    assert len(vectors) == len(stored)
    texts = [f"{r['question']} {r['answer']}" for r in stored]
    assert np.allclose(vectors.astype(np.float32), np.asarray(hash_embedder(texts), dtype=np.float16).astype(np.float32), atol=1e-3)


def test_a_failed_write_of_a_group_fails_its_calls_and_leaves_no_vector_without_its_row(tmp_path, monkeypatch):
    """Disk full at a group's write: the run stops with the storage error (no call is told its rows are stored),
    samples.jsonl and row_vectors.f16 still agree, and the resumed run finishes exact."""
    import errno

    from treesynth.core.errors import StorageError
    from treesynth.core.neardup import VectorLog
    from treesynth.core.store import RunStore

    real = RunStore._write_samples
    seen = {"n": 0}

    def write(self, data):
        seen["n"] += 1
        if seen["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", "samples.jsonl")
        real(self, data)

    monkeypatch.setattr(RunStore, "_write_samples", write)
    out = tmp_path / "r"
    with pytest.raises(StorageError, match="No space left on device"):
        asyncio.run(Run.create(_cfg(), out, transport=ScriptedTransport(), embed=HeldEmbedder(held=False, batch_rows=20)).execute(lambda e: None))
    assert seen["n"] >= 3  # a group admitted meanwhile may still be written: its rows and vectors both

    def agree():
        log = VectorLog(out / "row_vectors.f16", 64)
        n = len(log.read())
        log.close()
        return n, len(read_jsonl(out / "samples.jsonl"))

    n_vectors, n_rows = agree()
    assert 0 < n_rows and n_vectors == n_rows
    monkeypatch.setattr(RunStore, "_write_samples", real)
    fin = asyncio.run(Run.resume(out, transport=ScriptedTransport(), embed=HeldEmbedder(held=False)).execute(lambda e: None))
    assert fin.status == "complete" and fin.rows == 120
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 120 and len({r["id"] for r in rows}) == 120
    n_vectors, n_rows = agree()
    assert n_vectors == n_rows


def test_generation_goes_on_while_rows_wait_for_their_vectors(tmp_path):
    """The embedder answers nothing until every generation call the run needs has been made: the calls
    were made while 0 rows had passed the gates (generation never waited for a vector)."""
    emb = HeldEmbedder(held=True)
    t = ScriptedTransport()
    seen: list[ev.Event] = []

    async def go():
        run = Run.create(_cfg(size=60), tmp_path / "r", transport=t, embed=emb)
        task = asyncio.ensure_future(run.execute(seen.append))
        for _ in range(400):
            await asyncio.sleep(0.01)
            if t.calls["gen"] >= 12:  # 60 rows, 5 a call
                break
        await asyncio.sleep(0.7)  # a heartbeat of the engine's ticker: the gates' latest counts
        calls_while_held = t.calls["gen"]
        waiting = max((e.in_gates for e in seen if isinstance(e, ev.Quality)), default=0)
        done_while_held = max((e.samples_done for e in seen if isinstance(e, ev.LeafProgress)), default=0)
        emb.release.set()
        fin = await task
        return fin, calls_while_held, waiting, done_while_held

    fin, calls_while_held, waiting, done_while_held = asyncio.run(go())
    assert calls_while_held >= 12 and done_while_held == 0
    assert waiting >= 30  # the display saw rows in the gates (not a stalled "0/60")
    assert fin.status == "complete" and fin.rows == 60
    last = [e for e in seen if isinstance(e, ev.Quality)][-1]
    assert last.in_gates == 0 and last.generated >= 60


def test_the_queue_is_bounded_so_generation_slows_to_what_the_gates_take(tmp_path, monkeypatch):
    from treesynth.core.quality.pipeline import GatePipeline

    real_init = GatePipeline.__init__

    def small(self, *a, **kw):  # room for 4 calls' rows, from the pipeline's first moment (set later, calls raced it)
        real_init(self, *a, **kw)
        self.capacity = 20

    monkeypatch.setattr(GatePipeline, "__init__", small)
    emb = HeldEmbedder(held=True)
    t = ScriptedTransport()

    async def go():
        run = Run.create(_cfg(size=200), tmp_path / "r", transport=t, embed=emb)
        run_task = asyncio.ensure_future(run.execute(lambda e: None))
        await asyncio.sleep(0.5)
        pipe = run._engine.pipeline
        held = pipe.waiting
        emb.release.set()
        fin = await run_task
        return fin, held

    fin, held = asyncio.run(go())
    assert held <= 20 + 5  # a call whose rows found the queue empty, at most one over
    assert fin.status == "complete" and fin.rows == 200


def test_an_interrupted_gate_loses_nothing_and_the_resume_is_exact(tmp_path, index_where):
    """Stopped while rows wait in the gates: those rows were never stored; the resume asks their calls
    again (from the cache) and ends at the exact size with no row twice and a vector per row."""
    emb = HeldEmbedder(held=True)
    t = ScriptedTransport()
    out = tmp_path / "r"

    async def first():
        run = Run.create(_cfg(size=100), out, transport=t, embed=emb)
        task = asyncio.ensure_future(run.execute(lambda e: None))
        for _ in range(400):
            await asyncio.sleep(0.01)
            if t.calls["gen"] >= 10:
                break
        run.request_stop()
        emb.release.set()
        return await task

    fin = asyncio.run(first())
    assert fin.status != "complete"
    run = Run.resume(out, transport=ScriptedTransport(), embed=HeldEmbedder(held=False))
    fin = asyncio.run(run.execute(lambda e: None))
    assert fin.status == "complete" and fin.rows == 100
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 100 and len({r["id"] for r in rows}) == 100
    assert len({json.dumps([r["question"], r["answer"]]) for r in rows}) == 100
    from treesynth.core.neardup import VectorLog

    log = VectorLog(out / "row_vectors.f16", 64)
    assert len(log.read()) == len(read_jsonl(out / "samples.jsonl"))
    log.close()
    where, made = index_where
    assert len(made) == (2 if where == "own-process" else 0) and all(p._proc is None for p in made)  # one a run, closed


def test_the_status_line_shows_rows_in_the_gates():
    p = Progress(size=1000)
    p.apply(ev.Quality(generated=1300, in_gates=256))
    assert "(1,300 rows generated, 256 in the gates)" in status_line(p)
    p.apply(ev.Quality(generated=1, in_gates=0))
    assert "(1 row generated, 0 in the gates)" in status_line(p)
    p.apply(ev.Quality())
    assert "in the gates" not in status_line(p)


def test_dedup_and_the_judge_together_keep_the_size_exact(tmp_path):
    """Rows pass the dedup gate (counted as waiting for their verdicts at once), then the judge; failed rows
    are written again; the dataset ends at its exact size with no row twice."""
    t = ScriptedTransport(judge_fails=("item 1",))
    run = Run.create(_cfg(size=60, judge=True), tmp_path / "r", transport=t, embed=HeldEmbedder(held=False))
    fin = asyncio.run(run.execute(lambda e: None))
    assert fin.status == "complete" and fin.rows == 60
    rows = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert len(rows) == 60 and len({r["id"] for r in rows}) == 60
    assert all(r["judge"]["pass"] for r in rows) and not any("item 1" in r["question"] for r in rows)
    q = run.quality()
    assert q is not None and q.judge_rejected > 0 and q.in_gates == 0


def test_a_failed_write_is_the_error_of_every_call_in_its_group_and_of_every_later_one():
    """No call of a group whose write failed is told that its rows are stored, and a call submitted after it
    fails at once (the run stops on the error)."""
    from contextlib import contextmanager

    from treesynth.core.quality.pipeline import GatePipeline

    writes = {"n": 0}

    @contextmanager
    def full_disk():  # the first group's write fails; a later one would succeed
        yield
        writes["n"] += 1
        if writes["n"] == 1:
            raise OSError(28, "No space left on device")

    async def go():
        committed: list[int] = []

        def commit(item, idx, keep, sims, P):
            committed.append(item.slot)
            return len(idx)

        pipe = GatePipeline(KeepAllIndex(), HeldEmbedder(held=True, batch_rows=10), lambda items: [list(range(len(i.rows))) for i in items],
                            commit, group=full_disk)

        calls = [asyncio.ensure_future(pipe.submit(_item(k))) for k in (0, 1)]
        await asyncio.sleep(0.01)
        pipe.embedder.release.set()
        done = await asyncio.gather(*calls, return_exceptions=True)
        assert committed == [0, 1] and all(isinstance(d, OSError) for d in done)
        with pytest.raises(OSError, match="No space"):
            await pipe.submit(_item(2))
        assert committed == [0, 1] and writes["n"] == 1  # refused before it was gated
        await pipe.aclose()

    asyncio.run(go())


def test_calls_waiting_for_room_get_it_in_order_and_a_cancelled_one_gives_its_place_up():
    """Only the calls whose rows fit are woken when rows leave the gates, first come first served; a call
    cancelled while it waits (or just after it got room) leaves the room to the next."""
    from treesynth.core.quality.pipeline import GatePipeline

    async def go():
        emb = HeldEmbedder(held=True, batch_rows=5)
        order: list[int] = []

        def commit(item, idx, keep, sims, P):
            order.append(item.slot)
            return len(idx)

        pipe = GatePipeline(KeepAllIndex(), emb, lambda items: [list(range(len(i.rows))) for i in items], commit, capacity=10)

        tasks = {k: asyncio.ensure_future(pipe.submit(_item(k))) for k in range(6)}
        await asyncio.sleep(0.01)
        assert pipe.waiting == 10 and len(pipe._room) == 4  # two calls' rows in the gates, four calls in line
        tasks[3].cancel()  # gives its place up while it waits
        await asyncio.sleep(0)
        emb.release.set()
        done = await asyncio.gather(*(tasks[k] for k in (0, 1, 2, 4, 5)))
        assert done == [5] * 5 and tasks[3].cancelled()
        assert order == [0, 1, 2, 4, 5] and pipe.waiting == 0 and not pipe._room
        # granted room, cancelled before it used it: the room goes back
        emb.release.clear()
        first = [asyncio.ensure_future(pipe.submit(_item(k))) for k in (6, 7)]
        await asyncio.sleep(0.01)
        late = asyncio.ensure_future(pipe.submit(_item(8)))
        await asyncio.sleep(0)
        assert len(pipe._room) == 1
        pipe._room[0][1].set_result(None)  # as _grant would, then the call is cancelled before it runs on
        pipe.waiting += 5
        late.cancel()
        await asyncio.sleep(0)
        assert late.cancelled() and pipe.waiting == 10
        emb.release.set()
        assert await asyncio.gather(*first) == [5, 5] and pipe.waiting == 0
        await pipe.aclose()

    asyncio.run(go())


def test_exact_copies_from_calls_gated_together_are_dropped_before_the_index(tmp_path):
    """Every fourth row repeats one text across calls (``duplicate_every``): calls in flight together carry the same
    copy into one gate batch, where only its first is offered to the index (``_plan_gated``); the others are exact
    copies, not near-duplicates, and the size stays exact with every stored text distinct."""
    emb = HeldEmbedder(held=False)
    run = Run.create(_cfg(), tmp_path / "r", transport=ScriptedTransport(duplicate_every=4), embed=emb)
    fin = asyncio.run(run.execute(lambda e: None))
    rows = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert fin.status == "complete" and len(rows) == 120
    assert len({(r["question"], r["answer"]) for r in rows}) == 120
    assert sum(r["question"] == "duplicate question" for r in rows) == 1  # the copy is stored once
    assert max(emb.batches) > 5
    turned_away = read_jsonl(tmp_path / "r" / "rejected.jsonl") if (tmp_path / "r" / "rejected.jsonl").exists() else []
    assert not [r for r in turned_away if "duplicate question" in json.dumps(r)]  # no copy reached the index
