"""The real command in a real terminal: ``treesynth run "..."`` (no --no-ui) under tmux, against the
loopback OpenAI-compatible stub, driven with send-keys and read with capture-pane until it finishes.

Needs tmux (Debian package ``tmux``); skipped when it is not installed.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, read_jsonl
from tests.stub_server import StubOpenAI

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install -y tmux)"),
]


_SERVERS = itertools.count()


class Tmux:
    """One private tmux server (its own socket), one session."""

    def __init__(self, name: str, cols: int = 100, rows: int = 30) -> None:
        # a socket of its own per instance: the same name for each test of a worker raced the previous test's
        # server still shutting down on it ("server exited unexpectedly", once in the full suite)
        self.sock = f"treesynth-test-{os.getpid()}-{name}-{next(_SERVERS)}"
        self.session = name
        self.cols, self.rows = cols, rows

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, check=check, timeout=30)

    def start(self, command: str, env: dict[str, str], cwd: Path) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", self.session, "-x", str(self.cols), "-y", str(self.rows),
                   f"cd {shlex.quote(str(cwd))} && env -i {exports} {command}")

    def screen(self) -> str:
        r = self._tmux("capture-pane", "-p", "-t", self.session, check=False)
        return r.stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Wait until the screen shows ``text`` (a regular expression if it starts with ``re:``)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if (re.search(text[3:], screen, re.M) if text.startswith("re:") else text in screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear within {timeout}s; the screen was:\n{screen}")

    def kill(self) -> None:
        self._tmux("kill-server", check=False)

    def quit_and_exit_code(self, done: Path, timeout: float = 30.0) -> str:
        """Close the summary, quit the app, and return the exit code the command wrote to ``done``."""
        self.keys("Escape")
        time.sleep(1.0)
        self.keys("q")
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.exists(), self.screen()
        return done.read_text().strip()


@pytest.fixture
def tmux():
    t = Tmux("run")
    yield t
    t.kill()


def _terminal_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the command under tmux: the CLI's test settings, a terminal, nothing else."""
    env = cli_env(TERM="xterm-256color", LANG="C.UTF-8", HOME=str(home), **extra)
    keep = {"PATH", "TERM", "LANG", "HOME", "LITELLM_LOCAL_MODEL_COST_MAP", "PYTHONPATH", "VIRTUAL_ENV", *extra}
    return {k: v for k, v in env.items() if k in keep}


def _treesynth() -> str:
    exe = Path(sys.executable).parent / "treesynth"
    return shlex.quote(str(exe)) if exe.exists() else f"{shlex.quote(sys.executable)} -m treesynth.cli"


def test_treesynth_run_in_a_real_terminal(tmux, tmp_path):
    out = tmp_path / "run"
    done = tmp_path / "exit-code"
    env = _terminal_env(tmp_path, COLORTERM="truecolor")
    with StubOpenAI(latency=0.05) as stub:
        cmd = (f"{_treesynth()} run 'GSM8K-style math word problems' --model openai/stub --api-base {stub.url} "
               f"--fields question,answer --depth 2 --size 30 --pivots 6 --concurrency 2 --out {shlex.quote(str(out))}; "
               f"echo $? > {shlex.quote(str(done))}; sleep 60")
        tmux.start(cmd, env, tmp_path)
        # the run screen opens on the task and the tree starts growing
        screen = tmux.wait_for("GSM8K-style math word problems", timeout=90)
        screen = tmux.wait_for("(root)", timeout=60)
        assert "openai/stub" in screen
        tmux.wait_for("aspect at depth 0", timeout=60)  # children of the root, named by the stub
        # pause: the stats bar says so and no calls start; resume
        tmux.keys("p")
        tmux.wait_for(r"re:samples .*ETA \S+\s+paused\s*$", timeout=20)
        time.sleep(0.5)
        n = stub.requests
        time.sleep(1.0)
        assert stub.requests <= n + 2, "calls kept starting while paused"  # at most the calls in flight
        tmux.keys("p")
        tmux.wait_for(r"re:samples .*ETA \S+\s+running\s*$", timeout=20)
        # it finishes: the summary
        screen = tmux.wait_for("Run complete", timeout=120)
        assert "30/30 in" in screen and "dataset" in screen  # the summary rows the CLI prints too
        tmux.keys("Escape")  # a lone escape: the terminal parser waits a moment before taking it as the key
        screen = tmux.wait_for("re:^(?![\\s\\S]*Run complete)[\\s\\S]*30/30 samples", timeout=10)  # summary closed
        assert "✓ 30/30 (root)" in screen
        tmux.keys("q")
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.exists(), tmux.screen()
        assert done.read_text().strip() == "0"
        after = tmux.wait_for("status:   complete", timeout=10)  # the summary is printed on the terminal after the UI closes
        assert f"run dir:  {out}" in after
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30


def test_treesynth_balance_opens_the_tui_in_a_real_terminal(tmux, tmp_path):
    import json

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"question": f"{who} has {i} {what}. How many are left after {i % 3} are given away?", "answer": str(i)}) + "\n"
                            for i, (who, what) in enumerate([("Ann", "apples"), ("Bo", "pens"), ("Cy", "cards"), ("Di", "coins")] * 6)))
    out = tmp_path / "bal"
    done = tmp_path / "exit-code"
    env = _terminal_env(tmp_path, TREESYNTH_CACHE_DIR=str(tmp_path / "cache"))
    with StubOpenAI(latency=0.02) as stub:
        cmd = (f"{_treesynth()} balance {shlex.quote(str(data))} --fields question,answer --task 'Short math word problems' "
               f"--model openai/stub --api-base {stub.url} --depth 1 --pivots 6 --target-per-leaf 8 --route embed "
               f"--out {shlex.quote(str(out))}; echo $? > {shlex.quote(str(done))}; sleep 60")
        tmux.start(cmd, env, tmp_path)
        screen = tmux.wait_for("Short math word problems", timeout=90)  # the run screen, on the balance's task
        screen = tmux.wait_for("Balance complete", timeout=180)
        assert "rows in" in screen and "entropy" in screen and "Gini" in screen
        assert tmux.quit_and_exit_code(done) == "0"
        after = tmux.wait_for("status:   complete", timeout=10)
        assert "balance:" in after and "synthesised" in after
    summary = json.loads((out / "balance_summary.json").read_text())
    assert summary["input_rows"] == 24 and summary["rows_after"] == 8 * summary["leaves"]
