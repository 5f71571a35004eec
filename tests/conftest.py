from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.stub_server import StubOpenAI
from treesynth.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def gsm8k_file(name: str = "test") -> Path:
    """``../shared/data/gsm8k/<name>.jsonl``, the human GSM8K rows the tests measure against (MIT; beside the
    clone in CI, never copied into it). Missing: the test fails with one line that names the folder, not a bare
    FileNotFoundError from deep inside it."""
    path = SHARED / "data" / "gsm8k" / f"{name}.jsonl"
    if not path.is_file():
        pytest.fail(f"this test reads the human GSM8K rows, {path}: put the shared folder beside the clone "
                    "(../shared/data/gsm8k/{train,test}.jsonl)", pytrace=False)
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``treesynth ARGS`` as a real process (``python -m treesynth.cli``): for what needs one, such as the
    interpreter's start-up and exit status, signals, a kill, another user, or a model loaded in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "treesynth.cli", *args], capture_output=True, text=True,
        env=env or cli_env(), timeout=timeout, cwd=str(cwd) if cwd else None,
    )


class CliResult(NamedTuple):
    """What one in-process ``treesynth`` command gave back (the fields a ``CompletedProcess`` has)."""

    returncode: int
    stdout: str
    stderr: str


def call_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> CliResult:
    """``treesynth ARGS`` in this process: the CLI's entry function with the environment a real process would
    get from ``run_cli`` (``cli_env()``: no ``*_API_KEY`` unless ``env`` sets it; ``env`` may be a ``cli_env(...)``)
    and the working directory ``cwd``, both restored afterwards; what it prints to stdout and stderr is returned."""
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        for key in [k for k in os.environ if k.endswith("_API_KEY")]:
            mp.delenv(key)
        for key, value in {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}.items():
            mp.setenv(key, value)
        if cwd is not None:
            mp.chdir(cwd)
        _stderr_as_in_a_process(mp)
        # earlier tests' garbage finalised now, not while the command's stderr is kept: an aiohttp session left
        # on a loop that is still open says "Unclosed client session" when collected (once, amid a CLI test's
        # one-line error), which a process of its own would never have printed
        gc.collect()
        out, err = _ThisThread(sys.stdout), _ThisThread(sys.stderr)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(list(args))
    return CliResult(code, out.text.getvalue(), err.text.getvalue())


class _ThisThread(io.TextIOBase):
    """Stands in for sys.stdout or sys.stderr during one ``call_cli``: keeps what the command's thread writes;
    what other threads write (the test's own servers) goes on to the stream it replaces, as it would if the
    command were a process of its own."""

    def __init__(self, others: io.TextIOBase) -> None:
        self.text = io.StringIO()
        self.others = others
        self.owner = threading.get_ident()

    def write(self, s: str) -> int:
        return (self.text if threading.get_ident() == self.owner else self.others).write(s)

    def flush(self) -> None:
        self.others.flush()


def _stderr_as_in_a_process(mp: pytest.MonkeyPatch) -> None:
    """What a fresh interpreter prints on stderr, pytest collects for its report instead: log records that
    no handler takes, warnings, exceptions in threads and in finalisers. For one ``call_cli`` they go to
    ``sys.stderr`` again (so an assertion on stderr sees them as it would a process's); called inside
    ``warnings.catch_warnings()``, which restores the filters."""
    mp.setattr(logging.getLogger(), "handlers", [])  # none: records reach logging.lastResort, i.e. sys.stderr
    mp.setattr(threading, "excepthook", threading.__excepthook__)
    mp.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    mp.setattr(warnings, "showwarning", lambda message, category, filename, lineno, file=None, line=None:
               sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line)))
    warnings.resetwarnings()  # the interpreter's default filters
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# Every test runs in an isolated environment: no API key, endpoint or treesynth setting of the shell that
# started pytest, and a cache directory of its own instead of ~/.cache/treesynth.
_LEAKS = re.compile(
    r"_API_KEY$|_API_BASE$|^OPENAI_(?:BASE_URL|ORGANIZATION|ORG_ID|PROJECT_ID)$|^(?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN)$|^TREESYNTH_"
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """For the whole session (module fixtures too: servers, runs made once per file): the shell's
    ``*_API_KEY``, ``*_API_BASE``, OpenAI endpoint and organisation, Hugging Face token and ``TREESYNTH_*``
    variables are removed, and ``TREESYNTH_CACHE_DIR`` (the product's only cache root, core/embeddings.py;
    ``XDG_CACHE_HOME`` is read only without it) points at a folder of this session (of this xdist worker).

    That folder is a speed cache of derived artefacts only, shared by the session's tests on purpose:
    ``embeddings/`` (vectors keyed by text and model fingerprint) and ``onnx/``, the int8 model compiled
    from the packaged embedder (keyed by its fingerprint and format version, written atomically), which
    is linked to pytest's own cache (.pytest_cache) so that it is compiled once per checkout, not once
    per session. A test that counts cache files or hits sets ``TREESYNTH_CACHE_DIR`` itself
    (tests/test_embeddings.py's ``cache_dir``)."""
    mp = pytest.MonkeyPatch()
    for key in [k for k in os.environ if _LEAKS.search(k)]:
        mp.delenv(key)
    cache = tmp_path_factory.getbasetemp() / "treesynth-cache"
    cache.mkdir(exist_ok=True)
    onnx = cache / "onnx"
    keep = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: compiled once per session then
    if keep is not None and not onnx.exists():
        onnx.symlink_to(keep.mkdir("treesynth-onnx"), target_is_directory=True)
    mp.setenv("TREESYNTH_CACHE_DIR", str(cache))
    mp.setenv("TREESYNTH_LOCAL_THREADS", "1")  # the embedded model on one thread (see MODEL_UNITS below)
    # Ray starts its workers at nice 15 (RayConfig worker_niceness): beside the other xdist workers at nice 0 they
    # got a few percent of a core, and a 21-s Ray Data test took 241 s in the full suite. Every Ray instance the
    # tests start (in process, `ray start`, the CLI's own) reads this from the environment.
    mp.setenv("RAY_worker_niceness", "0")
    yield cache
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_env(_isolated_session):
    """Each test gets the session's clean environment back afterwards, whatever it (or the product:
    ``HF_HUB_OFFLINE``, ``LITELLM_*``, ...) set or removed."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def stub():
    with StubOpenAI() as s:
        yield s


# ---------------------------------------------------------------------------
# Three workers (pytest-xdist, ``--dist loadgroup``, see pyproject): each file is one unit of work, so its
# module fixtures (a browser, a run killed once) start once. What runs llama.cpp (a real server, the embedded
# model) is grouped in three units, run first, longest first, beside each other and beside the other files;
# every llama.cpp process of the suite runs on ONE thread (``TREESYNTH_LOCAL_THREADS`` here, the servers'
# ``--n_threads`` in tests/llama_server.py), so two of them, or one beside a busy worker, share the two cores
# instead of spinning against each other. The Ray files are one unit: ``--ray-address auto`` must find that
# unit's cluster, not another worker's.
MODEL_UNITS: dict[str, tuple[str, ...]] = {
    "models-server": ("test_real_server.py", "test_ray.py"),
    "models-embedded": ("test_embedded_model.py", "test_examples.py", "test_local_decoder.py", "test_roles_servers.py"),
    "models-faults": ("test_server_faults.py", "test_notebook.py", "test_embed_server.py"),
}
# then the longest of the rest: the report's fp32 check (torch and onnxruntime on GSM8K), so it never ends the suite alone
LONGEST_FIRST = (*MODEL_UNITS, "test_embedding_precision.py")
_UNIT_OF = {name: unit for unit, names in MODEL_UNITS.items() for name in names}


def _unit(item: pytest.Item) -> str:
    return _UNIT_OF.get(item.path.name, item.path.name)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_unit(item)))
    rank = {u: i for i, u in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(_unit(it), len(rank)))  # stable: file order otherwise
