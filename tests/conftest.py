from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stub_server import StubOpenAI

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "treesynth.cli", *args], capture_output=True, text=True,
        env=env or cli_env(), timeout=timeout, cwd=str(cwd) if cwd else None,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def stub():
    with StubOpenAI() as s:
        yield s
