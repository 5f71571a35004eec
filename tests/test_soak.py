"""Crash soak: SIGKILL the CLI at random moments, resume each time, and account for every call.

TREESYNTH_SOAK_KILLS sets the number of kills (default 20; the long soak used 100),
TREESYNTH_SOAK_SEED the random seed. After every kill the test reads what the run had
persisted (committed response-cache rows, complete sample lines; tests/faultserver.py's
``persisted_keys``) and the server's log of requests, so it can hold the engine to:

  * a call whose answer was persisted is never asked again (no finished work is repeated);
  * the calls repeated after a kill are at most the calls in flight at that moment, i.e. the
    requests the killed process had sent whose answers it had not persisted, which is itself
    at most --concurrency;
  * the final dataset has exactly --size rows, no duplicate ids or samples, no generation
    call written twice, and a valid tree (``check_run``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env
from tests.faultserver import FaultConfig, FaultServer, check_run, persisted_keys

KILLS = int(os.environ.get("TREESYNTH_SOAK_KILLS", "20"))
SEED = int(os.environ.get("TREESYNTH_SOAK_SEED", "1"))
CONCURRENCY = 4
SIZE = 240


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "treesynth.cli", *args], env=cli_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _soak_run(srv: FaultServer, out: Path, rng: random.Random, kills_wanted: int, report: list[dict]) -> int:
    """Kill and resume one run until it finishes or ``kills_wanted`` kills are done; returns the kills."""
    args = ["run", "math word problems", "--no-ui", "--model", "openai/fault-model", "--api-base", srv.url, "--out", str(out),
            "--fields", "question,answer", "--size", str(SIZE), "--depth", "2", "--pivots", "4", "--samples-per-call", "2",
            "--concurrency", str(CONCURRENCY)]
    kills = 0
    ever_requested: set[str] = set()
    persisted: set[str] = set()
    session = 0
    while True:
        srv.epoch = session
        first = len(srv.records)
        p = _start(args if session == 0 else ["run", "--resume", str(out), "--no-ui"])
        # a random moment once the session is at work (startup, mostly importing litellm, tests nothing)
        deadline = time.time() + 120
        while len(srv.records) == first and p.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        finished = False
        if kills < kills_wanted and p.poll() is None:
            time.sleep(rng.uniform(0.0, 0.6))
        if kills < kills_wanted and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            kills += 1
        else:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-2000:]
            finished = True
        time.sleep(0.05)  # requests the dead process had sent reach the server
        mine = [r for r in srv.records[first:] if r.epoch == session]
        keys = [r.key for r in mine]
        # 1. nothing persisted before this session was asked again in it
        again = [k for k in keys if k in persisted]
        assert not again, f"session {session}: {len(again)} calls asked again although their answers were persisted"
        # 2. repeats come only from calls in flight at an earlier kill (requested, never persisted)
        repeated = [k for k in keys if k in ever_requested]
        assert len(set(keys)) == len(keys), f"session {session}: the same call asked twice in one session"
        ever_requested.update(keys)
        persisted = persisted_keys(out)
        in_flight = [k for k in keys if k not in persisted]
        if not finished:
            assert len(in_flight) <= CONCURRENCY, f"session {session}: {len(in_flight)} unpersisted calls at the kill (> --concurrency)"
        report.append({"session": session, "requests": len(keys), "repeated": len(repeated), "in_flight_at_end": len(in_flight), "killed": not finished})
        if report[-1]["repeated"]:
            prev = report[-2]
            assert report[-1]["repeated"] <= sum(x["in_flight_at_end"] for x in report[:-1]), report
            assert prev["killed"]
        session += 1
        if finished:
            return kills


@pytest.mark.slow
def test_crash_soak_sigkill_at_random_moments(tmp_path):
    rng = random.Random(SEED)
    report: list[dict] = []
    total = 0
    runs = 0
    t0 = time.time()
    with FaultServer(FaultConfig(latency=0.03, latency_dist="exp", latency_spread=0.03, record=True, seed=SEED)) as srv:
        while total < KILLS:
            out = tmp_path / f"run{runs}"
            n = len(report)
            total += _soak_run(srv, out, rng, KILLS - total, report)
            check_run(out, SIZE)
            # a finished run re-run makes zero calls
            before = srv.requests
            r = call_cli("run", "--resume", str(out), "--no-ui")
            assert r.returncode == 0 and srv.requests == before, r.stderr
            runs += 1
            sessions = report[n:]
            print(f"run {runs}: {len(sessions) - 1} kills, {sum(s['requests'] for s in sessions)} requests, "
                  f"{sum(s['repeated'] for s in sessions)} repeated after kills, "
                  f"{sum(s['in_flight_at_end'] for s in sessions if s['killed'])} in flight at the kills")
    summary = {
        "kills": total, "runs": runs, "seconds": round(time.time() - t0, 1), "requests": sum(s["requests"] for s in report),
        "repeated_after_kills": sum(s["repeated"] for s in report),
        "in_flight_at_kills": sum(s["in_flight_at_end"] for s in report if s["killed"]),
        "max_in_flight_at_a_kill": max((s["in_flight_at_end"] for s in report if s["killed"]), default=0),
    }
    print("soak:", json.dumps(summary))
    assert total >= KILLS
    assert summary["repeated_after_kills"] <= summary["in_flight_at_kills"]
