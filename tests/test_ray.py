"""The Ray executor (issue 7) on a local Ray instance: same rows as the local executor, a worker
killed mid-run loses nothing, run directories resume with either executor, the CLI end to end,
and one line without Ray.

One Ray instance (2 CPUs, token auth as Ray now defaults) serves the whole module; each test
makes its own worker pool (about 0.3 s)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, read_jsonl, run_cli
from tests.fakes import ScriptedTransport
from tests.ray_fakes import FlakyFactory, ScriptedFactory
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.run import Run

# a local Ray cluster, its workers and processes killed mid-run: the full suite's, not the quick loop's
pytestmark = pytest.mark.slow

FIELDS = ("question", "answer")


def _cfg(**kw):
    flags = {"task": "math word problems", "fields": ",".join(FIELDS), "depth": 2, "size": 60, "pivots": 6, "seed": 7}
    flags.update(kw)
    return build_config(flags=flags)


@pytest.fixture(scope="module")
def ray_local():
    pytest.importorskip("ray")
    from tests.ray_fakes import start_local_ray

    ray = start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _pool(cfg, workers=2, factory=None, **kw):
    from treesynth.core.llm.transports.ray import RayTransport

    return RayTransport(cfg, workers=workers, transport_factory=factory or ScriptedFactory({"fields": FIELDS, **kw}), model="fake/scripted")


def _execute(run, on_event=None):
    events: list[ev.Event] = []

    def sink(e):
        events.append(e)
        if on_event:
            on_event(e)

    return asyncio.run(run.execute(sink)), events


def _rows(out: Path) -> list[str]:
    """The dataset, one canonical JSON line per row, sorted (ids, leaves, paths and fields)."""
    return sorted(json.dumps(r, sort_keys=True) for r in read_jsonl(out / "dataset.jsonl"))


def _saved(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())["config"]


def _tree(out: Path) -> list[tuple]:
    nodes = json.loads((out / "tree.json").read_text())["nodes"]
    return sorted((n["id"], n["status"], n.get("value"), n.get("target")) for n in nodes)


def _reference(tmp_path: Path, **kw) -> Path:
    out = tmp_path / "local"
    fin, _ = _execute(Run.create(_cfg(**kw), out, transport=ScriptedTransport(fields=FIELDS)))
    assert fin.status == "complete"
    return out


def test_ray_executor_gives_the_local_executors_rows(ray_local, tmp_path):
    ref = _reference(tmp_path)
    cfg = _cfg(executor="ray", concurrency=8)
    pool = _pool(cfg, latency=0.002)
    out = tmp_path / "ray"
    fin, events = _execute(Run.create(cfg, out, transport=pool))
    assert fin.status == "complete" and fin.rows == 60
    assert _rows(out) == _rows(ref)  # same ids, leaf assignment, paths and texts
    assert _tree(out) == _tree(ref)
    done = [e.samples_done for e in events if isinstance(e, ev.LeafProgress)]
    assert done == sorted(done) and done[-1] == 60  # streamed back per call, in order
    assert _saved(out)["executor"] == "ray"
    assert os.environ.get("RAY_AUTH_MODE") == "token"  # Ray's default for a new local instance


def test_both_workers_share_the_calls_and_the_pool_is_released(ray_local, tmp_path):
    cfg = _cfg(executor="ray", concurrency=8, size=40)
    pool = _pool(cfg, latency=0.01)
    actors = pool.actors()
    run = Run.create(cfg, tmp_path / "r", transport=pool)
    stats = {}

    def on_event(e):
        if isinstance(e, ev.RunFinished):
            stats["calls"] = [s["calls"] for s in pool.stats()]

    fin, _ = _execute(run, on_event)
    assert fin.status == "complete"
    assert len(stats["calls"]) == 2 and min(stats["calls"]) > 0 and sum(stats["calls"]) == fin.requests
    assert pool.actors() == []  # Run.close() killed the actors
    with pytest.raises(Exception):  # noqa: B017 - Ray raises RayActorError or ActorDiedError for a killed actor, by timing
        ray_local.get(actors[0].stats.remote(), timeout=30)


def test_a_shared_cache_makes_the_ray_run_free_and_identical(ray_local, tmp_path):
    cache = str(tmp_path / "cache.sqlite")
    ref = tmp_path / "local"
    fin, _ = _execute(Run.create(_cfg(cache_path=cache), ref, transport=ScriptedTransport(fields=FIELDS)))
    cfg = _cfg(executor="ray", cache_path=cache)
    pool = _pool(cfg)
    seen = {}
    out = tmp_path / "ray"

    def on_event(e):
        if isinstance(e, ev.RunFinished):
            seen["calls"] = sum(s["calls"] for s in pool.stats())

    fin, events = _execute(Run.create(cfg, out, transport=pool), on_event)
    assert fin.status == "complete" and seen["calls"] == 0  # the driver consults the cache before dispatching
    assert [e for e in events if isinstance(e, ev.Usage)][-1].cache_hits > 0
    assert _rows(out) == _rows(ref)


@pytest.mark.parametrize("ray_retries", [3, 0], ids=["ray-retries", "driver-retries"])
def test_killing_a_worker_mid_run_still_gives_exactly_size_rows(ray_local, tmp_path, ray_retries):
    """With Ray's task retries the calls in flight on the dead worker are re-sent by Ray; without
    them Ray reports the dead actor, which the driver's client retries like any transient error."""
    from treesynth.core.llm.transports.ray import RayTransport

    ref = _reference(tmp_path, size=120, samples_per_call=2)
    cfg = _cfg(executor="ray", size=120, samples_per_call=2, concurrency=8)
    pool = RayTransport(cfg, workers=2, transport_factory=ScriptedFactory({"fields": FIELDS, "latency": 0.05}),
                        model="fake/scripted", max_task_retries=ray_retries)
    pids = [w["pid"] for w in pool.workers]
    killed: list[int] = []

    def on_event(e):
        # kill one worker process after a quarter of the rows, the other after half
        if isinstance(e, ev.LeafProgress) and len(killed) < 2 and e.samples_done >= 30 * (len(killed) + 1):
            os.kill(pids[len(killed)], signal.SIGKILL)
            killed.append(pids[len(killed)])
        if isinstance(e, ev.RunFinished):
            killed.append(tuple(s["pid"] for s in pool.stats()))

    out = tmp_path / "ray"
    run = Run.create(cfg, out, transport=pool)
    run.client.backoff_base = 0.01
    fin, events = _execute(run, on_event)
    retries = [e for e in events if isinstance(e, ev.Usage)][-1].retries
    if ray_retries == 0:
        assert retries > 0  # the dead actor's calls came back as transient errors and were retried
    assert len(killed) == 3, "the run finished before both workers were killed"
    assert set(killed[2]).isdisjoint(pids)  # both actors were restarted in new processes
    assert fin.status == "complete" and fin.rows == 120
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == 120 and len({s["id"] for s in samples}) == 120  # nothing lost, nothing duplicated
    assert _rows(out) == _rows(ref)


def test_transient_worker_errors_are_retried_by_the_driver(ray_local, tmp_path):
    cfg = _cfg(executor="ray", size=30)
    pool = _pool(cfg, factory=FlakyFactory(fail_every=3, kwargs={"fields": FIELDS}))
    pool_run = Run.create(cfg, tmp_path / "r", transport=pool)
    pool_run.client.backoff_base = 0.001
    fin, events = _execute(pool_run)
    usage = [e for e in events if isinstance(e, ev.Usage)][-1]
    assert fin.status == "complete" and fin.rows == 30 and usage.retries > 0


def test_a_fatal_worker_error_fails_the_run_with_one_line(ray_local, tmp_path):
    from treesynth.core.errors import ProviderError

    cfg = _cfg(executor="ray", size=10)
    run = Run.create(cfg, tmp_path / "r", transport=_pool(cfg, factory=FlakyFactory(fatal=True)))
    with pytest.raises(ProviderError, match="authentication failed"):
        _execute(run)


@pytest.mark.parametrize("first", ["ray", "local"])
def test_the_run_directory_resumes_with_either_executor(ray_local, tmp_path, first):
    ref = _reference(tmp_path, depth=1, size=40, samples_per_call=2)
    out = tmp_path / "run"
    kw = {"depth": 1, "size": 40, "samples_per_call": 2, "concurrency": 1, "budget": 0.1}
    cfg = _cfg(executor=first, **kw)
    t1 = _pool(cfg, cost=0.01) if first == "ray" else ScriptedTransport(fields=FIELDS, cost=0.01)
    fin, _ = _execute(Run.create(cfg, out, transport=t1))
    assert fin.status == "budget" and 0 < fin.rows < 40
    second = "local" if first == "ray" else "ray"
    overrides = {"executor": second, "budget": 10.0, "concurrency": 4}
    probe = build_config(base={**_saved(out), **overrides})
    t2 = _pool(probe, cost=0.01) if second == "ray" else ScriptedTransport(fields=FIELDS, cost=0.01)
    run = Run.resume(out, overrides=overrides, transport=t2)
    assert run.cfg.executor == second
    fin2, _ = _execute(run)
    assert fin2.status == "complete" and fin2.rows == 40
    samples = read_jsonl(out / "samples.jsonl")
    assert len({s["id"] for s in samples}) == len(samples) == 40
    assert _rows(out) == _rows(ref)


def _gsm8k_questions() -> list[str]:
    from tests.conftest import gsm8k_file

    with open(gsm8k_file("test")) as f:
        return [json.loads(line)["question"] for line in f]


class _HumanRows(ScriptedTransport):
    """The scripted provider, its generated rows replaced by GSM8K's human questions, each used once (the
    scripted texts differ by a number only: semantic dedup would rightly turn them away)."""

    _questions = None

    async def __call__(self, req):
        import dataclasses

        if self._questions is None:
            self._questions = iter(_gsm8k_questions())
        c = await super().__call__(req)
        if req.slot.split(":")[1] != "gen":
            return c
        answer = json.loads(c.text)
        for row in answer["samples"]:
            row["question"] = next(self._questions)
        return dataclasses.replace(c, text=json.dumps(answer))


def test_the_gates_embed_on_ray_actors_with_the_local_models_vectors(ray_local, tmp_path):
    """``--embedder ray``: the local model on Ray actors gives the local model's vectors (fp32, the same
    texts, compared here against the local embedder), from the event loop and from a worker thread; a whole
    run gated on them (semantic dedup) reaches exact size, records its embedder, and resumes with the local
    one (the same vectors); the actors are gone when the run closes."""
    import numpy as np

    from treesynth.core.embeddings import load_embedder
    from treesynth.core.quality.embed_ray import RayRowEmbedder

    texts = _gsm8k_questions()[:24]
    emb = RayRowEmbedder("all-MiniLM-L6-v2", workers=2)
    try:
        X = asyncio.run(emb.embed(texts))
        Y = emb.embed_blocking(texts[:5])
        assert emb.parallel == 2 and sum(s["rows"] for s in emb.stats()) == 29
    finally:
        emb.close()
    assert not emb.stats()
    L = load_embedder()(texts)
    assert X.shape == (24, 384) and X.dtype == np.float32
    assert np.abs(X - L).max() < 1e-4 and np.abs(Y - L[:5]).max() < 1e-4

    out = tmp_path / "gated"
    cfg = _cfg(embedder="ray", dedup_threshold=0.92, size=30, ray_workers=2)
    fin, events = _execute(Run.create(cfg, out, transport=_HumanRows(fields=FIELDS)))
    assert fin.status == "complete" and fin.rows == 30 and len(read_jsonl(out / "dataset.jsonl")) == 30
    assert _saved(out)["embedder"] == "ray"
    r = call_cli("run", "--resume", str(out), "--embedder", "local", "--no-ui")
    assert r.returncode == 0, r.stderr  # the local model's vectors: the same index goes on
    import time

    deadline = time.monotonic() + 30  # the actors' CPUs come back once they are gone
    while ray_local.available_resources().get("CPU", 0) < ray_local.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, ray_local.available_resources()
        time.sleep(0.2)


def test_without_ray_the_cli_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import treesynth.cli.main as cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rc = cli.main(["run", "math", "--executor", "ray", "--no-ui", "--size", "5", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "pip install 'treesynth[ray]'" in err
    assert not (tmp_path / "r").exists()  # checked before the run directory is made


def test_executor_keys_are_config_keys_and_resumable():
    from treesynth.core.config import RESUMABLE_OVERRIDES
    from treesynth.core.errors import ConfigError

    cfg = build_config(flags={"task": "t", "executor": "ray", "ray_address": "auto", "ray_workers": 3})
    assert (cfg.executor, cfg.ray_address, cfg.ray_workers) == ("ray", "auto", 3)
    assert build_config(flags={"task": "t"}).executor == "local"
    assert {"executor", "ray_address", "ray_workers"} <= RESUMABLE_OVERRIDES
    with pytest.raises(ConfigError, match="executor"):
        build_config(flags={"task": "t", "executor": "dask"})


@pytest.mark.slow
def test_cli_joins_the_running_cluster_and_calls_the_provider_from_the_workers(ray_local, tmp_path, stub):
    """`--executor ray --ray-address auto` joins this module's cluster (token from the environment);
    the workers' own transports (the native http client, chosen as on the driver) call the stub server;
    then the run resumes locally for free."""
    out = tmp_path / "run"
    base = ["--model", "openai/stub", "--api-base", stub.url, "--no-ui"]
    r = run_cli("run", "math word problems", *base, "--fields", "question,answer", "--size", "20", "--depth", "1",
                "--pivots", "4", "--samples-per-call", "3", "--executor", "ray", "--ray-address", "auto",
                "--ray-workers", "2", "--out", str(out), env=cli_env(), timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(read_jsonl(out / "dataset.jsonl")) == 20
    assert _saved(out)["ray_address"] == "auto"
    calls = stub.completions
    assert calls > 0
    assert {a.split("/")[0] for a in stub.seen_agents} == {"treesynth"}  # the workers used the http transport
    r2 = call_cli("run", "--resume", str(out), "--no-ui", "--executor", "local", env=cli_env())
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert stub.completions == calls  # finished: zero calls


# ---------------------------------------------------------------------------
# treesynth report --executor ray (analytics/ray_embed.py)


def test_streamed_partial_sums_give_the_reports_metrics():
    """No Ray needed: per-batch partial sums, added up, equal the metrics on the whole matrix."""
    import numpy as np

    from treesynth.analytics import metrics as M
    from treesynth.analytics.ray_embed import StreamStats, _partial

    rng = np.random.default_rng(0)
    X = M.normalize_rows(rng.normal(size=(500, 16)).astype(np.float32) + 0.5)
    leaves = [f"0.{i % 7}" for i in range(500)]
    st = StreamStats()
    for a in range(0, 500, 64):
        st.add(_partial(X[a : a + 64], leaves[a : a + 64]))
    assert st.n == 500
    assert st.mean_pairwise_cosine() == pytest.approx(M.mean_pairwise_cosine(X), abs=1e-9)
    assert st.vendi_score() == pytest.approx(M.vendi_score(X), rel=1e-6)
    order = [f"0.{i}" for i in range(8)]  # one leaf got no rows: it counts as empty
    cov = st.coverage(order)
    ref = M.coverage_metrics(X, np.array([int(leaf[2:]) for leaf in leaves]), 8)
    for k in ("occupancy_entropy", "gini", "empty_leaves", "within_leaf_similarity", "between_leaf_similarity", "leaf_sizes"):
        assert cov[k] == pytest.approx(ref[k], abs=1e-9), k


@pytest.mark.slow
def test_ray_report_embeddings_and_streamed_full_data_metrics_match_local(ray_local, tmp_path):
    import numpy as np

    from treesynth.analytics.analysis import analyse
    from treesynth.analytics.data import load_dataset
    from treesynth.analytics.ray_embed import RayEmbedder, full_data_metrics
    from treesynth.analytics.results import Analysis
    from treesynth.core.embeddings import Embedder

    out = tmp_path / "run"
    _execute(Run.create(_cfg(size=90), out, transport=ScriptedTransport(fields=FIELDS)))
    full = load_dataset(out)
    local = Embedder(precision="fp32", cache=False)
    X = local.embed(full.texts)
    remote = RayEmbedder(precision="fp32", cache=False, workers=2)
    assert np.array_equal(remote.embed(full.texts), X)  # same model, precision and float16 rounding

    ref = Analysis(ds=full, X=X)
    analyse(ref, "m", 0, np.random.default_rng(0))
    ds = load_dataset(out, sample=30, seed=0)
    a = Analysis(ds=ds, X=local.embed(ds.texts))
    analyse(a, "m", 0, np.random.default_rng(0))
    assert a.metrics["vendi_score"]["n"] == 30
    st = full_data_metrics(a, remote, "m", 0)  # the workers read dataset.jsonl themselves
    assert st.n == 90
    for key in ("mean_cosine_similarity", "vendi_score", "occupancy_entropy", "leaf_gini", "within_leaf_similarity",
                "between_leaf_similarity", "empty_leaves"):
        assert a.metrics[key]["n"] == 90, key
        assert a.metrics[key]["value"] == pytest.approx(ref.metrics[key]["value"], abs=1e-6), key
    assert "streamed over all 90 rows on Ray" in a.metrics["vendi_score"]["method"]


def test_report_takes_the_executor_flags():
    from treesynth.cli.main import build_parser

    args = build_parser().parse_args(["report", "runs/x", "--executor", "ray", "--ray-address", "auto", "--sample", "1000"])
    assert (args.executor, args.ray_address) == ("ray", "auto")
    assert build_parser().parse_args(["report", "runs/x"]).executor == "local"
