"""The near-duplicate index in a process of its own (core/neardup_process.py): the same answers as the index
in process, errors that say what happened, and a child that never outlives its parent's pipe."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from tests.test_neardup import DIM, TH, clustered, rand_unit
from treesynth.core.neardup import NearDuplicateIndex
from treesynth.core.neardup_process import IndexProcess, IndexProcessError


@pytest.fixture
def proc():
    # BLAS on one thread here too, as a run's dedup holds it (core/quality/dedup.py) and as the child runs: the index's
    # products (faiss's cell assignment among them) then sum in the same order in both processes
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        p = IndexProcess(DIM, TH, expected_rows=16_000)
        yield p
        p.close()


def test_same_decisions_and_cosines_as_the_index_in_process(proc) -> None:
    # past the exact stage (cells for 16,000 rows: exact until 4,096), seeded by ``add``, in uneven batches
    rng = np.random.default_rng(7)
    X = clustered(6000, rng, dup_frac=0.05)
    local = NearDuplicateIndex(DIM, TH, expected_rows=16_000)
    local.add(X[:500])
    proc.add(X[:500])
    a = 500
    for size in [1, 5, 256, 1000, 4238]:
        B = X[a : a + size]
        kl, sl = local.admit(B)
        kp, sp = proc.admit(B)
        assert kp.dtype == bool and sp.dtype == np.float32 and len(kp) == len(B)
        assert np.array_equal(kl, kp) and np.array_equal(sl, sp)
        a += size
    assert a == len(X) and len(proc) == len(local) and not local.exact
    assert 0 < len(X) - len(proc) < len(X) // 5  # near-duplicates were turned away, most rows kept


def test_float16_rows_travel_as_float16_and_get_the_answers_of_their_float32_values(proc) -> None:
    # the endpoint embedder's vectors are float16: half the bytes through the pipe, the same decisions
    rng = np.random.default_rng(11)
    H = clustered(5000, rng, dup_frac=0.05).astype(np.float16)
    local = NearDuplicateIndex(DIM, TH, expected_rows=16_000)
    sent: list[bytes] = []
    request = proc._request
    proc._request = lambda kind, *payload: (sent.append(kind), request(kind, *payload))[1]  # type: ignore[method-assign]
    proc.add(H[:300])
    local.add(H[:300].astype(np.float32))
    for a, b in [(300, 305), (305, 4400), (4400, 5000)]:
        kl, sl = local.admit(H[a:b].astype(np.float32))
        kp, sp = proc.admit(H[a:b])
        assert np.array_equal(kl, kp) and np.array_equal(sl, sp)
    assert sent == [b"a", b"d", b"d", b"d"] and not local.exact
    proc.admit(H[:2].astype(np.float32))
    assert sent[-1] == b"D"


def test_admits_on_the_event_loop_give_the_same_answers_and_mix_with_the_synchronous_requests(proc) -> None:
    import asyncio

    # requests of up to 4,238 float32 rows (1 MB, far past a pipe's 64 KB) written and read without blocking the loop,
    # between synchronous adds and admits (which put the pipes back in blocking mode)
    rng = np.random.default_rng(13)
    X = clustered(6000, rng, dup_frac=0.05)
    local = NearDuplicateIndex(DIM, TH, expected_rows=16_000)

    async def go() -> list[float]:
        ticks: list[float] = []

        async def tick() -> None:  # the loop runs on while a request is in flight
            while True:
                ticks.append(asyncio.get_running_loop().time())
                await asyncio.sleep(0)

        t = asyncio.ensure_future(tick())
        a = 0
        for size, how in [(300, "add"), (5, "async"), (1000, "sync"), (4238, "async"), (1, "async"), (200, "add"), (256, "async")]:
            B = X[a : a + size]
            if how == "add":
                local.add(B)
                proc.add(B)
            else:
                kl, sl = local.admit(B)
                kp, sp = await proc.admit_async(B) if how == "async" else proc.admit(B)
                assert np.array_equal(kl, kp) and np.array_equal(sl, sp)
            a += size
        t.cancel()
        return ticks

    ticks = asyncio.run(go())
    assert len(proc) == len(local) and not local.exact and len(ticks) > 10


def test_an_admit_cancelled_on_the_loop_closes_the_process_and_a_dead_child_is_an_error(capfd) -> None:
    import asyncio

    X = rand_unit(np.random.default_rng(14), 7500)
    proc = IndexProcess(DIM, TH, expected_rows=16_000)  # started under capfd: its stderr is read below
    proc.admit(X[:4500])  # past the exact stage (4,096 rows)

    async def cancelled() -> None:
        task = asyncio.ensure_future(proc.admit_async(X[4500:]))
        await asyncio.sleep(0)  # the request (768 KB) is in the pipe; the child answers after its pipes are closed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert "Traceback" not in capfd.readouterr().err
    with pytest.raises(IndexProcessError, match="closed"):  # its pipes were out of step: it is closed, not reused
        asyncio.run(proc.admit_async(X[:2]))
    p = IndexProcess(DIM, TH)
    try:
        assert p._proc is not None
        os.kill(p._proc.pid, signal.SIGKILL)
        p._proc.wait()
        with pytest.raises(IndexProcessError, match="ended unexpectedly"):
            asyncio.run(p.admit_async(X[:4]))
    finally:
        p.close()


def test_a_child_whose_answer_finds_its_pipe_closed_ends_quietly(capfd) -> None:
    # what an admit cancelled on the loop leaves: a request in the pipe, its answer's reader gone
    from treesynth.core.frames import send_frame
    from treesynth.core.neardup_process import _ROWS, _end

    X = rand_unit(np.random.default_rng(15), 3000)
    p = IndexProcess(DIM, TH, expected_rows=16_000)  # started under capfd: its stderr is read below
    child = p._proc
    assert child is not None and child.stdin is not None
    send_frame(child.stdin, b"D", _ROWS.pack(len(X)), np.ascontiguousarray(X, dtype="<f4").tobytes())
    p._proc = None
    _end(child)  # both pipes closed before the child can have answered
    assert child.returncode == 0 and "Traceback" not in capfd.readouterr().err


def test_bad_vectors_are_a_value_error_and_the_child_lives_on(proc) -> None:
    with pytest.raises(ValueError, match="dimension"):
        proc.admit(np.ones((2, DIM + 1), dtype=np.float32))
    X = rand_unit(np.random.default_rng(1), 3)
    X[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        proc.admit(X)  # found by the index in the child
    keep, _ = proc.admit(rand_unit(np.random.default_rng(2), 3))
    assert keep.all() and len(proc) == 3
    keep, sims = proc.admit(np.zeros((0, DIM), dtype=np.float32))
    assert len(keep) == 0 and len(sims) == 0


def test_a_dead_child_is_an_error_not_a_hang(proc) -> None:
    proc.admit(rand_unit(np.random.default_rng(3), 4))
    assert proc._proc is not None
    os.kill(proc._proc.pid, signal.SIGKILL)
    proc._proc.wait()
    with pytest.raises(IndexProcessError, match="ended unexpectedly"):
        proc.admit(rand_unit(np.random.default_rng(4), 4))


def test_close_ends_the_child_and_later_calls_say_so() -> None:
    p = IndexProcess(DIM, TH)
    child = p._proc
    assert child is not None
    p.close()
    assert child.returncode == 0
    p.close()  # twice is fine
    with pytest.raises(IndexProcessError, match="closed"):
        p.add(rand_unit(np.random.default_rng(5), 1))


def test_close_without_waiting_returns_at_once_and_the_child_still_ends() -> None:
    p = IndexProcess(DIM, TH)
    p.add(rand_unit(np.random.default_rng(7), 8))
    child = p._proc
    assert child is not None
    p.close(wait=False)
    assert p._proc is None
    with pytest.raises(IndexProcessError, match="closed"):
        p.add(rand_unit(np.random.default_rng(8), 1))
    assert child.stdin is not None and child.stdin.closed  # its pipes are closed here, now: it sees the end
    for reaper in [t for t in threading.enumerate() if t.name == "treesynth-index-exit"]:
        reaper.join(timeout=10)
    assert child.returncode == 0  # reaped by the daemon thread: no zombie left behind


def test_the_child_ignores_ctrl_c_its_parent_closes_it() -> None:
    p = IndexProcess(DIM, TH)
    try:
        assert p._proc is not None
        os.kill(p._proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C would (it has a session of its own: it gets none)
        keep, _ = p.admit(rand_unit(np.random.default_rng(6), 2))
        assert keep.all()
    finally:
        p.close()


def ends_with_its_killed_parent(code: str) -> bool:
    """Whether the child whose pid the Python ``code`` prints ends within 30 s of its parent's SIGKILL."""
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # alive
    parent.kill()  # SIGKILL: no cleanup runs in the parent
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # ended (a zombie until init reaps it)
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_parent_killed_takes_the_child_along() -> None:
    code = (
        "from treesynth.core.neardup_process import IndexProcess\n"
        "import sys, time\n"
        "p = IndexProcess(8, 0.9)\n"
        "print(p._proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    assert ends_with_its_killed_parent(code), "the index process outlived its killed parent by 30 s"
