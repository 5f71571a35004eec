"""Fault injection through the real product path: the CLI, litellm or the native http transport,
and HTTP against tests/faultserver.py (flaky provider, graceful stop, budget, storage faults, secrets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, run_cli
from tests.faultserver import FaultConfig, FaultServer, check_run

TASK = "GSM8K-style math word problems"
SMALL = ["--fields", "question,answer", "--depth", "2", "--pivots", "4", "--samples-per-call", "3"]
TRANSPORTS = pytest.mark.parametrize("transport", ["http", "litellm"])


def _args(srv: FaultServer, out: Path, *extra: str, model: str = "openai/fault-model", transport: str | None = None) -> list[str]:
    tr = ["--transport", transport] if transport else []
    return ["run", TASK, "--no-ui", "--model", model, "--api-base", srv.url, "--out", str(out), *SMALL, *tr, *extra]


def _start(args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "treesynth.cli", *args], env=env or cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, **kw,
    )


def _wait_for(pred, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(out: Path) -> int:
    p = out / "samples.jsonl"
    return p.read_bytes().count(b"\n") if p.exists() else 0


def _settle(srv: FaultServer) -> None:
    """Let the server finish handlers of hung or dropped requests before comparing counters."""
    _wait_for(lambda: srv.in_flight == 0, 15, "the server to settle")


def _usage(stdout: str) -> dict:
    events = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
    return [e for e in events if e["event"] == "usage"][-1]


def _scan_for(out: Path, secrets: list[str], *texts: str) -> None:
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for s in secrets:
                assert s.encode() not in data, f"secret leaked into {f.name}"
    for t in texts:
        for s in secrets:
            assert s not in t, "secret leaked into the output"


# ---------------------------------------------------------------------------
# flaky provider
# ---------------------------------------------------------------------------


@TRANSPORTS
@pytest.mark.slow
def test_flaky_provider_completes_exactly_and_counters_match_the_server(tmp_path, transport):
    # 20% of requests fail, spread over 500, 503, 429 + Retry-After, hangs, dropped connections,
    # malformed JSON, truncated and empty answers; 20% of classifications break the partition rules
    cfg = FaultConfig.flaky(0.2, latency=0.01, latency_dist="exp", latency_spread=0.02, retry_after=0.05, hang_s=10, seed=7)
    out = tmp_path / "run"
    with FaultServer(cfg) as srv:
        # --timeout 2 (first token: 6 s) still gives up on every 10-s hang; at 1 s a healthy answer delayed by a busy
        # machine (the full suite's three workers) timed out too, one error more than the server's faults
        r = call_cli(*_args(srv, out, "--size", "60", "--concurrency", "8", "--timeout", "2", "--max-retries", "10", transport=transport), "--json-events")
        _settle(srv)
        assert r.returncode == 0, r.stderr[-2000:]
        o = srv.stats.outcomes
        # every fault kind happened at least once: the mix is real
        assert all(o[k] > 0 for k in ("500", "503", "429", "hang", "drop", "malformed", "truncated", "empty", "violation")), dict(o)
        failed = (srv.failures + srv.invalid) / srv.requests
        assert 0.12 <= failed <= 0.45, f"fault rate {failed:.2f} ({dict(o)})"
        usage = _usage(r.stdout)
        assert usage["requests"] == srv.requests
        assert usage["errors"] == srv.failures
        assert usage["retries"] == srv.failures  # none ran out of retries
        assert usage["invalid"] == srv.invalid
        state = json.loads((out / "state.json").read_text())
        assert state["status"] == "complete"
        assert state["usage"]["requests"] == srv.requests and state["usage"]["retries"] == srv.failures
    check_run(out, 60)


@pytest.mark.slow
def test_retries_exhausted_fail_the_node_with_one_line_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    with FaultServer(FaultConfig(p_500=1.0)) as srv:  # the server answers, with an error every time
        r = call_cli(*_args(srv, out, "--size", "10", "--depth", "1", "--max-retries", "1"))
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert srv.requests == 2  # one call, one retry
        state = json.loads((out / "state.json").read_text())
        assert state["status"] == "incomplete"
        srv.config.p_500 = 0.0
        r2 = call_cli("run", "--resume", str(out), "--no-ui")
        assert r2.returncode == 0, r2.stderr
    check_run(out, 10)


def test_an_endpoint_that_only_answers_503_is_an_outage_that_stops_past_its_timeout_and_resumes(tmp_path):
    """503 is what a gateway in front of a restarting server says: an outage (core/llm/outage.py), not a
    failed node; past --outage-timeout the run stops with one line, and resumes once the server is back."""
    out = tmp_path / "run"
    with FaultServer(FaultConfig(p_503=1.0)) as srv:
        t0 = time.monotonic()
        r = call_cli(*_args(srv, out, "--size", "10", "--depth", "1", "--max-retries", "1", "--outage-timeout", "2"))
        assert r.returncode == 1 and time.monotonic() - t0 < 30, r.stderr
        assert "Traceback" not in r.stderr and "--outage-timeout 2" in r.stderr
        assert "failed" not in r.stderr.split("status:", 1)[-1].split("\n", 1)[0]  # no node failed for it
        srv.config.p_503 = 0.0
        r2 = call_cli("run", "--resume", str(out), "--no-ui")
        assert r2.returncode == 0, r2.stderr
    check_run(out, 10)


# ---------------------------------------------------------------------------
# graceful stop
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.slow
def test_signal_stops_gracefully_saves_state_and_resumes(tmp_path, sig):
    out = tmp_path / "run"
    with FaultServer(FaultConfig(latency=0.05)) as srv:
        p = _start(_args(srv, out, "--size", "150", "--samples-per-call", "1", "--concurrency", "3"))
        _wait_for(lambda: _rows(out) >= 5 or p.poll() is not None, what="first samples")
        assert p.poll() is None, "the run finished before it could be stopped"
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert f"treesynth run --resume {out}" in err
        assert "Traceback" not in err
        state = json.loads((out / "state.json").read_text())
        assert state["status"] == "stopped"
        assert state["rows"] == _rows(out)  # the state agrees with what is on disk
        assert state["usage"]["requests"] == srv.requests
        r = call_cli("run", "--resume", str(out), "--no-ui")
        assert r.returncode == 0, r.stderr
    check_run(out, 150)


@pytest.mark.slow
def test_second_ctrl_c_quits_at_once_without_corrupting(tmp_path):
    out = tmp_path / "run"
    # slow calls: the first Ctrl-C would wait for them; the second must not
    with FaultServer(FaultConfig(latency=3.0)) as srv:
        p = _start(_args(srv, out, "--size", "40", "--samples-per-call", "2", "--concurrency", "4"))
        _wait_for(lambda: srv.in_flight > 0 and (out / "events.jsonl").exists(), what="calls in flight")
        p.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert p.poll() is None, "the first Ctrl-C must wait for the calls in flight"
        t0 = time.time()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert time.time() - t0 < 2.0, "the second Ctrl-C must quit at once"
        assert p.returncode == 130
        assert f"resume with: treesynth run --resume {out}" in err
        assert "Traceback" not in err
        srv.config.latency = 0.0
        r = call_cli("run", "--resume", str(out), "--no-ui")
        assert r.returncode == 0, r.stderr
    check_run(out, 40)


# ---------------------------------------------------------------------------
# budget
# ---------------------------------------------------------------------------


def _price(model: str) -> tuple[float, float]:
    from treesynth.core.llm import load_litellm

    info = load_litellm().model_cost[model]
    return info["input_cost_per_token"], info["output_cost_per_token"]


@TRANSPORTS
@pytest.mark.slow
def test_budget_stops_at_or_just_past_it_and_resumes_with_a_raised_budget(tmp_path, transport):
    pin, pout = _price("gpt-4o-mini")
    tin, tout = 20_000, 2_000  # the server reports these per call: a priced, known cost per call
    per_call = tin * pin + tout * pout
    budget = round(12 * per_call, 6)
    conc = 4
    env = cli_env(OPENAI_API_KEY="sk-test-budget-0000")
    out = tmp_path / "run"
    with FaultServer(FaultConfig(latency=0.05, tokens_in=tin, tokens_out=tout)) as srv:
        r = call_cli(*_args(srv, out, "--size", "80", "--concurrency", str(conc), "--budget", str(budget), model="openai/gpt-4o-mini", transport=transport),
                     "--json-events", env=env)
        assert r.returncode == 3, r.stderr
        assert "budget" in r.stderr.lower()
        fin = json.loads(r.stdout.splitlines()[-1])
        assert fin["event"] == "run_finished" and fin["status"] == "budget"
        spent = fin["cost_usd"]
        # at or just past the budget: at most the calls in flight when it was reached
        assert budget <= spent <= budget + conc * per_call + 1e-9, (budget, spent, per_call)
        assert srv.requests <= budget / per_call + conc + 1
        assert abs(spent - srv.requests * per_call) < 1e-9  # the cost is the server's token counts, priced
        state = json.loads((out / "state.json").read_text())
        assert state["status"] == "budget"
        n1 = srv.requests
        r2 = call_cli("run", "--resume", str(out), "--no-ui", "--budget", "10", "--json-events", env=env)
        assert r2.returncode == 0, r2.stderr
        fin2 = json.loads(r2.stdout.splitlines()[-1])
        assert fin2["status"] == "complete"
        assert abs(fin2["cost_usd"] - srv.requests * per_call) < 1e-9  # cumulative across both sessions
        assert srv.requests > n1
    check_run(out, 80)


# ---------------------------------------------------------------------------
# streamed calls: idle timeouts (core/llm/transports/idle.py)
# ---------------------------------------------------------------------------


@TRANSPORTS
@pytest.mark.slow
def test_a_server_slower_than_the_timeout_that_keeps_writing_completes_without_a_retry(tmp_path, transport):
    # chunks 0.06 s apart: a samples answer takes a second or more in all, longer than --timeout 0.5, which bounds only silences
    out = tmp_path / "run"
    with FaultServer(FaultConfig(trickle=0.06, chunk_chars=12, record=True)) as srv:
        r = call_cli(*_args(srv, out, "--size", "6", "--depth", "1", "--timeout", "0.5", "--concurrency", "4", transport=transport), "--json-events")
        _settle(srv)
        assert r.returncode == 0, r.stderr[-2000:]
        usage = _usage(r.stdout)
        assert (usage["errors"], usage["retries"]) == (0, 0) and usage["requests"] == srv.requests == srv.stats.streamed
        longest = max(x.t_done - x.t_recv for x in srv.records)
        print(f"\n{transport}: the longest call took {longest:.2f}s with --timeout 0.5")
        assert longest > 2 * 0.5
    check_run(out, 6)


@TRANSPORTS
@pytest.mark.slow
def test_stalled_streams_are_given_up_within_the_gap_retried_and_counted(tmp_path, transport):
    out = tmp_path / "run"
    with FaultServer(FaultConfig(stall=3, record=True)) as srv:
        t0 = time.monotonic()
        r = call_cli(*_args(srv, out, "--size", "6", "--depth", "1", "--timeout", "0.5", "--first-token-timeout", "20", "--concurrency", "2",
                            transport=transport), "--json-events")
        took = time.monotonic() - t0
        _settle(srv)
        assert r.returncode == 0, r.stderr[-2000:]
        stalled = [x.t_done - x.t_recv for x in srv.records if x.outcome == "stall"]
        print(f"\n{transport}: stalls given up after {', '.join(f'{s:.2f}s' for s in stalled)} with --timeout 0.5; the run took {took:.1f}s")
        assert len(stalled) == 3 and all(0.5 <= s < 1.5 for s in stalled)  # the gap (and a margin for a loaded machine), not the first token's 20 s
        usage = _usage(r.stdout)
        assert usage["errors"] == usage["retries"] == 3 and usage["requests"] == srv.requests
        # the stalled calls are counted: their prompts (estimated as the server does, characters / 4) and the 64
        # characters each received (16 tokens), beside the whole answers' usage
        assert usage["tokens_in"] == srv.stats.tokens_in
        assert usage["tokens_out"] == sum(x.tokens_out for x in srv.records if x.outcome == "ok") + 3 * 16
    check_run(out, 6)


@TRANSPORTS
@pytest.mark.slow
def test_a_server_that_cannot_stream_is_asked_plainly_after_its_first_refusals(tmp_path, transport):
    out = tmp_path / "run"
    with FaultServer(FaultConfig(no_stream=True)) as srv:
        r = call_cli(*_args(srv, out, "--size", "6", "--depth", "1", "--concurrency", "2", transport=transport), "--json-events")
        assert r.returncode == 0, r.stderr[-2000:]
        usage = _usage(r.stdout)
        refused = srv.stats.outcomes["no_stream"]
        assert 1 <= refused <= 2 and srv.stats.streamed == 0  # at most the calls already in flight when the first was refused
        assert (usage["errors"], usage["retries"]) == (0, 0) and usage["requests"] == srv.stats.plain
    check_run(out, 6)


# ---------------------------------------------------------------------------
# storage faults
# ---------------------------------------------------------------------------


def _unprivileged():
    """When the tests run as root (which ignores file permissions), run the child without the
    capabilities that bypass them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): it then meets
    permissions as any user does."""
    if os.getuid() != 0:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in (1, 2):
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=drop, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("running as root without CAP_SETPCAP: file permissions cannot be enforced here")
    return drop


@pytest.fixture
def open_tmp():
    """A directory every user can enter (pytest's tmp_path is private to its owner)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="treesynth-faults-"))
    d.chmod(0o777)
    yield d
    for p in [d, *d.rglob("*")]:
        try:
            p.chmod(0o777)
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)


def _run_as(args: list[str], preexec, env=None) -> subprocess.CompletedProcess:
    env = env or cli_env()
    env["HOME"] = "/tmp"
    return subprocess.run([sys.executable, "-m", "treesynth.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300, preexec_fn=preexec)


@pytest.mark.slow
def test_unwritable_run_directory_is_one_clear_line(open_tmp):
    parent = open_tmp / "locked"
    parent.mkdir()
    with FaultServer() as srv:
        # a fresh run under a directory it cannot write
        parent.chmod(0o555)
        r = _run_as(_args(srv, parent / "run", "--size", "5"), _unprivileged())
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and "cannot create run directory" in line and "Permission denied" in line, line
        # resuming a run whose directory became read-only
        parent.chmod(0o777)
        out = parent / "run2"
        r = _run_as(_args(srv, out, "--size", "6", "--depth", "1"), _unprivileged())
        assert r.returncode == 0, r.stderr
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        out.chmod(0o555)
        r = _run_as(["run", "--resume", str(out), "--no-ui"], _unprivileged())
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and "cannot write to run directory" in line, line
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched


@pytest.mark.slow
def test_directory_turning_read_only_mid_run_stops_with_a_resume_hint(open_tmp):
    out = open_tmp / "run"
    with FaultServer(FaultConfig(latency=0.05)) as srv:
        env = cli_env()
        env["HOME"] = "/tmp"
        p = subprocess.Popen([sys.executable, "-m", "treesynth.cli", *_args(srv, out, "--size", "150", "--samples-per-call", "1", "--concurrency", "2")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_unprivileged())
        _wait_for(lambda: _rows(out) >= 3 or p.poll() is not None, what="first samples")
        out.chmod(0o555)  # snapshots (atomic renames) now fail
        _, err = p.communicate(timeout=120)
        out.chmod(0o777)
        assert p.returncode == 2, err
        last = err.strip().splitlines()[-1]
        assert "cannot write to run directory" in last and f"treesynth run --resume {out}" in last, last
        assert "internal error" not in err and "Traceback" not in err
        r = call_cli("run", "--resume", str(out), "--no-ui")
        assert r.returncode == 0, r.stderr
    check_run(out, 150)


def _limit_file_size(nbytes: int):
    """Every file write past ``nbytes`` fails (EFBIG), as on a full disk; SIGXFSZ is ignored so the
    write fails instead of killing the process."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


@pytest.mark.parametrize("limit", [40_000, 150_000])
@pytest.mark.slow
def test_disk_full_is_one_clear_line_and_resume_loses_nothing(tmp_path, limit):
    out = tmp_path / "run"
    with FaultServer(FaultConfig(latency=0.01)) as srv:
        r = subprocess.run([sys.executable, "-m", "treesynth.cli", *_args(srv, out, "--size", "600", "--samples-per-call", "2", "--concurrency", "4")],
                           capture_output=True, text=True, env=cli_env(), timeout=300, preexec_fn=_limit_file_size(limit))
        assert r.returncode == 2, r.stderr[-2000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("treesynth: error: cannot write to run directory"), last
        # whichever file hits the limit first: an append (EFBIG) or the response cache (SQLite's I/O error)
        assert ("File too large" in last or "response cache: disk I/O error" in last) and f"treesynth run --resume {out}" in last, last
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr
        # no torn line was left behind by the failed write
        for name in ("samples.jsonl", "nodes.jsonl", "slots.jsonl"):
            if (out / name).exists() and (out / name).stat().st_size:
                assert (out / name).read_bytes().endswith(b"\n"), name
        r2 = call_cli("run", "--resume", str(out), "--no-ui")
        assert r2.returncode == 0, r2.stderr
        assert "torn" not in r2.stderr
    check_run(out, 600)


def test_disk_full_in_process_short_writes_are_rolled_back(tmp_path, monkeypatch):
    """ENOSPC at the write layer: a short write followed by an error leaves no partial line."""
    import asyncio
    import errno

    from tests.fakes import ScriptedTransport
    from treesynth.core import store as store_mod
    from treesynth.core.config import build_config
    from treesynth.core.errors import StorageError
    from treesynth.core.run import Run

    budget = {"bytes": 6_000}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            left = budget["bytes"]
            if left <= 0:
                raise OSError(errno.ENOSPC, "No space left on device", str(self.f.name))
            n = self.f.write(bytes(data[:left]))  # a short write first, like a filling disk
            budget["bytes"] -= n
            return n

        def __getattr__(self, name):
            return getattr(self.f, name)

    real_open = store_mod.RunStore._open_append
    monkeypatch.setattr(store_mod.RunStore, "_open_append", lambda self, name: FullDisk(real_open(self, name)))
    cfg = build_config(flags={"task": "math", "fields": "question,answer", "depth": 2, "size": 200, "pivots": 4, "samples_per_call": 2})
    out = tmp_path / "run"
    with pytest.raises(StorageError) as ei:
        asyncio.run(Run.create(cfg, out, transport=ScriptedTransport()).execute())
    msg = str(ei.value)
    assert "No space left on device" in msg and f"treesynth run --resume {out}" in msg and "\n" not in msg
    for name in ("samples.jsonl", "nodes.jsonl", "events.jsonl"):
        p = out / name
        if p.exists() and p.stat().st_size:
            assert p.read_bytes().endswith(b"\n"), f"{name} was left with a torn line"
    monkeypatch.setattr(store_mod.RunStore, "_open_append", real_open)
    run = Run.resume(out, transport=ScriptedTransport())
    assert not [w for w in run.recovered.warnings if "torn" in w]
    fin = asyncio.run(run.execute())
    assert fin.status == "complete"
    check_run(out, 200)


def _snapshot_has_expanded(out: Path) -> bool:
    try:
        doc = json.loads((out / "tree.json").read_text())
    except (OSError, ValueError):
        return False
    return any(n["status"] == "expanded" and n["children"] for n in doc["nodes"])


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run killed with SIGKILL mid-synthesis, once its tree snapshot shows an expanded node."""
    out = tmp_path_factory.mktemp("killed") / "run"
    with FaultServer(FaultConfig(latency=0.02)) as srv:
        p = _start(_args(srv, out, "--size", "120", "--samples-per-call", "2", "--concurrency", "3"))
        _wait_for(lambda: (_rows(out) >= 20 and _snapshot_has_expanded(out)) or p.poll() is not None, what="samples and a snapshot")
        assert p.poll() is None, "the run finished before it could be killed"
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return out


def _resume_copy(killed: Path, dest: Path, damage) -> subprocess.CompletedProcess:
    import shutil

    shutil.copytree(killed, dest)
    damage(dest)
    with FaultServer(FaultConfig(latency=0.01)) as srv:
        return call_cli("run", "--resume", str(dest), "--no-ui", "--api-base", srv.url)


@pytest.mark.slow
def test_torn_tails_and_truncated_tree_json_recover_cleanly(killed_run, tmp_path):
    def damage(out: Path) -> None:
        for name in ("samples.jsonl", "nodes.jsonl"):
            with open(out / name, "ab") as f:
                f.write(b'{"id": "to')
        tj = out / "tree.json"
        tj.write_bytes(tj.read_bytes()[: tj.stat().st_size // 2])

    out = tmp_path / "run"
    r = _resume_copy(killed_run, out, damage)
    assert r.returncode == 0, r.stderr
    assert "samples.jsonl: cut" in r.stderr and "nodes.jsonl: cut" in r.stderr
    assert "tree.json is damaged" in r.stderr
    check_run(out, 120)


def _hand_edits():
    def drop_subtree(doc):  # a consistent edit: a node's children removed
        nodes = doc["nodes"]
        exp = next(n for n in nodes if n["status"] == "expanded" and n["children"])
        gone = set(exp["children"])
        exp["children"], exp["status"] = [], "pending"
        doc["nodes"] = [n for n in nodes if n["id"] not in gone and not any(n["id"].startswith(g + ".") for g in gone)]

    def bump_target(doc):
        node = next(n for n in doc["nodes"] if n["parent"] is not None)
        node["target"] += 7

    def break_structure(doc):
        doc["nodes"][0]["children"].append("0.99")

    def wrong_format(doc):
        doc["format"] = "something/else"

    return {"drop_subtree": drop_subtree, "bump_target": bump_target, "break_structure": break_structure, "wrong_format": wrong_format}


@pytest.mark.parametrize("edit", sorted(_hand_edits()))
@pytest.mark.slow
def test_hand_edited_tree_json_is_rebuilt_from_the_journal(killed_run, tmp_path, edit):
    def damage(out: Path) -> None:
        tj = out / "tree.json"
        doc = json.loads(tj.read_text())
        _hand_edits()[edit](doc)
        tj.write_text(json.dumps(doc, indent=2))

    out = tmp_path / "run"
    r = _resume_copy(killed_run, out, damage)
    assert r.returncode == 0, r.stderr
    assert "rebuilt it from nodes.jsonl" in r.stderr
    check_run(out, 120)


# ---------------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------------


@TRANSPORTS
@pytest.mark.slow
def test_api_keys_never_reach_the_run_directory_events_or_logs(tmp_path, transport):
    env_key = "sk-env-SECRET-7f3a9c1e5d"
    cfg_key = "sk-config-SECRET-2b8d4e6f0a"
    ref_key = "sk-referenced-SECRET-99aa88bb"
    env = cli_env(OPENAI_API_KEY=env_key, REF_KEY=ref_key)
    secrets = [env_key, cfg_key, ref_key]
    outputs: list[str] = []  # real processes' output: whatever any library logs or prints, on any handler, lands here
    with FaultServer(FaultConfig.flaky(0.2, retry_after=0.02, hang_s=5, seed=3)) as a, FaultServer() as b:
        # 1. a key in the environment, through a flaky provider (error messages end up in events)
        out1 = tmp_path / "env"
        r = run_cli(*_args(a, out1, "--size", "20", "--timeout", "1", "--max-retries", "8", transport=transport), "--json-events", env=env)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
        assert f"Bearer {env_key}" in a.stats.auth  # the key did go to the provider
        # 2. keys in the config file: a literal one and an os.environ/ reference
        cfg = tmp_path / "pool.yaml"
        cfg.write_text(
            f"task: {TASK}\nmodel: pool\nfields: [question, answer]\nsize: 32\nsamples_per_call: 1\ndepth: 1\npivots: 4\nrouter:\n  model_list:\n"
            f"    - model_name: pool\n      litellm_params: {{model: openai/a, api_base: '{a.url}', api_key: {cfg_key}}}\n"
            f"    - model_name: pool\n      litellm_params: {{model: openai/b, api_base: '{b.url}', api_key: os.environ/REF_KEY}}\n"
        )
        out2 = tmp_path / "cfg"
        r = run_cli("run", "--config", str(cfg), "--no-ui", "--out", str(out2), "--max-retries", "8", "--timeout", "1", env=env)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
        # litellm's router picks a deployment at random for each call: 32 rows one per call (40 and 43 calls measured) make a run
        # that never reaches one of the two about 2^-39 likely (16 rows in 8 calls failed CI once: 1 in 128)
        assert f"Bearer {cfg_key}" in a.stats.auth | b.stats.auth and f"Bearer {ref_key}" in a.stats.auth | b.stats.auth
        # 3. the provider rejects the key: the error line must not echo it
        bad = FaultServer(FaultConfig(status_all=401))
        with bad:
            r = run_cli(*_args(bad, tmp_path / "bad", "--size", "5", transport=transport), env=env)
        assert r.returncode == 2 and "authentication failed" in r.stderr
        outputs += [r.stdout, r.stderr]
        # 4. reports: tree, export, estimate
        for args in (["tree", str(out1)], ["export", str(out1), "--format", "jsonl"], ["estimate", "--config", str(cfg)]):
            r = run_cli(*args, env=env)
            assert r.returncode == 0, r.stderr
            outputs += [r.stdout, r.stderr]
    for out in (out1, out2, tmp_path / "bad"):
        if out.exists():
            _scan_for(out, secrets)
    _scan_for(tmp_path / "nonexistent", secrets, *outputs)
    saved = json.loads((out2 / "config.json").read_text())["config"]["router"]["model_list"]
    assert saved[0]["litellm_params"]["api_key"] == "<redacted>"
