"""Bad input: one clear line, non-zero exit, no traceback, existing runs untouched.

The commands run in-process (``call_cli``); the tests at the end run real processes (``run_cli``): start-up
without heavy imports and the exit status the interpreter hands the shell."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import call_cli, cli_env, run_cli


def _one_line_error(r, needle: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("treesynth: error: ")
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "   ", "--no-ui"], "task is empty"),
        (["run", "x", "--no-ui", "--depth", "-1"], "depth"),
        (["run", "x", "--no-ui", "--size", "0"], "size"),
        (["run", "x", "--no-ui", "--fields", "id,answer"], "reserved"),
        (["run", "x", "--no-ui", "--preset", "nope"], "unknown preset"),
        (["run", "x", "--no-ui", "--model", "notaprovider/some-model"], "unknown model"),
        (["run", "x", "--no-ui", "--model", "openai/gpt-4o-mini"], "missing API key"),
        (["run", "x", "--no-ui", "--model", "anthropic/claude-3-5-haiku-latest"], "ANTHROPIC_API_KEY"),
        (["run", "--resume", "/nonexistent/run", "--no-ui"], "does not exist"),
        (["estimate", ""], "task is empty"),
    ],
)
def test_bad_input_gives_one_line(args, needle, tmp_path):
    _one_line_error(call_cli(*args, cwd=tmp_path), needle)


def test_config_file_errors(tmp_path):
    bad_key = tmp_path / "c.toml"
    bad_key.write_text('task = "x"\ncolour = "blue"\n')
    _one_line_error(call_cli("run", "--config", str(bad_key), "--no-ui"), "unknown config key 'colour'")
    bad_yaml = tmp_path / "c.yaml"
    bad_yaml.write_text("task: [unclosed\n")
    _one_line_error(call_cli("run", "--config", str(bad_yaml), "--no-ui"), "malformed config file")
    missing = tmp_path / "none.toml"
    _one_line_error(call_cli("run", "--config", str(missing), "--no-ui"), "does not exist")


def test_flags_override_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: from file\nsize: 500\ndepth: 2\nfields: [question, answer]\n")
    r = call_cli("estimate", "--config", str(cfg), "--size", "1000")
    assert r.returncode == 0, r.stderr
    assert "from file" in r.stdout and "1,000 samples" in r.stdout


def test_resume_of_a_non_run_and_a_corrupt_run(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    _one_line_error(call_cli("run", "--resume", str(plain), "--no-ui"), "not a treesynth run")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    _one_line_error(call_cli("run", "--resume", str(corrupt), "--no-ui"), "corrupt")
    assert (corrupt / "config.json").read_text() == "{not json", "a failed resume must not touch the run"


def test_corrupt_samples_line_is_refused_not_lost(stub, tmp_path):
    out = tmp_path / "run"
    r = call_cli("run", "t", "--no-ui", "--model", "openai/stub", "--api-base", stub.url, "--size", "6", "--depth", "1",
                 "--pivots", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = (out / "samples.jsonl").read_bytes().splitlines(keepends=True)
    damaged = lines[0][:10] + b"\n" + b"".join(lines[1:])
    (out / "samples.jsonl").write_bytes(damaged)
    _one_line_error(call_cli("run", "--resume", str(out), "--no-ui"), "damaged line")
    assert (out / "samples.jsonl").read_bytes() == damaged


def test_existing_run_directory_is_never_overwritten(stub, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = call_cli("run", "t", "--no-ui", "--model", "openai/stub", "--api-base", stub.url, "--out", str(out))
    _one_line_error(r, "already exists")
    assert (out / "keep.txt").read_text() == "mine"


def test_no_ui_without_tui_says_so(tmp_path):
    r = call_cli("run", "x", cwd=tmp_path)
    _one_line_error(r, "--no-ui")


def test_estimate_prints_calls_tokens_cost():
    r = call_cli("estimate", "math problems", "--size", "1000", "--depth", "2", "--model", "openai/gpt-4o-mini")
    assert r.returncode == 0, r.stderr
    assert "calls:" in r.stdout and "tokens:" in r.stdout
    cost_line = [line for line in r.stdout.splitlines() if line.startswith("cost:")][0]
    assert "$" in cost_line and "unknown" not in cost_line
    # interactive against batch: the tree's calls at interactive prices, the rest at half (gpt-4o-mini's batch prices)
    batch_line = [line for line in r.stdout.splitlines() if line.startswith("with --batch:")][0]
    full, half = (float(x.split("$")[1].split()[0]) for x in (cost_line, batch_line))
    assert full / 2 < half < full


def test_batch_cost_splits_tree_and_batched_tokens():
    from treesynth.core.config import build_config
    from treesynth.core.estimate import estimate

    cfg = build_config(flags={"task": "t", "size": 1000, "depth": 2, "model": "openai/gpt-4o-mini"})
    est = estimate(cfg, price=lambda a, b: a + 2 * b)
    assert 0 < est.tree_tokens_in < est.tokens_in and 0 < est.tree_tokens_out < est.tokens_out
    got = est.batch_cost(lambda a, b: a + 2 * b, lambda a, b: (a + 2 * b) / 2)
    tree = est.tree_tokens_in + 2 * est.tree_tokens_out
    assert got == tree + (est.tokens_in + 2 * est.tokens_out - tree) / 2


def test_export_formats(stub, tmp_path):
    out = tmp_path / "run"
    r = call_cli("run", "t", "--no-ui", "--model", "openai/stub", "--api-base", stub.url, "--size", "7", "--depth", "1",
                 "--pivots", "4", "--fields", "question,answer", "--out", str(out))
    assert r.returncode == 0, r.stderr
    e = call_cli("export", str(out), "--format", "parquet", "--out", str(tmp_path / "d.parquet"))
    assert e.returncode == 0, e.stderr
    import polars as pl

    df = pl.read_parquet(tmp_path / "d.parquet")
    assert df.height == 7 and {"id", "leaf_id", "path", "question", "answer"} <= set(df.columns)
    j = call_cli("export", str(out), "--format", "jsonl", "--out", str(tmp_path / "d.jsonl"))
    assert j.returncode == 0
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 7
    assert "slot" not in json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("command", ["run", "balance"])
def test_resume_of_a_missing_directory_says_it_does_not_exist(command, tmp_path):
    missing = tmp_path / "no-such-run"
    r = call_cli(command, "--resume", str(missing), "--no-ui", cwd=tmp_path)
    _one_line_error(r, f"{str(missing)!r} does not exist")
    assert "balance run" not in r.stderr and not missing.exists()


def test_resume_of_a_file_says_it_is_not_a_directory(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    _one_line_error(call_cli("balance", "--resume", str(f), "--no-ui", cwd=tmp_path), "is not a directory")


@pytest.mark.parametrize("model, needle", [
    ("local/llama", "unknown local model 'llama'"),
    ("notaprovider/some-model", "unknown model 'notaprovider/some-model'"),
])
def test_estimate_refuses_the_models_run_refuses_with_the_same_line(model, needle, tmp_path):
    run_err = call_cli("run", "x", "--no-ui", "--model", model, cwd=tmp_path)
    _one_line_error(run_err, needle)
    est = call_cli("estimate", "x", "--model", model, cwd=tmp_path)
    _one_line_error(est, needle)
    assert est.stderr == run_err.stderr and est.returncode == run_err.returncode
    assert est.stdout == ""
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What is 1 + 1?"}\n{"question": "What is 2 + 2?"}\n')
    _one_line_error(call_cli("estimate", "--balance", str(data), "--model", model, cwd=tmp_path), needle)


def test_a_busy_server_is_reachable_a_closed_port_is_not():
    """A server that takes the connection but is slow to answer (llama.cpp's server still generating
    for a client that was killed) is reachable; a port nobody listens on is not."""
    import socket

    from treesynth.core.errors import ProviderError
    from treesynth.core.preflight import check_reachable

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(4)  # accepts (the kernel completes the handshake) and never answers
    try:
        check_reachable(f"http://127.0.0.1:{busy.getsockname()[1]}/v1", timeout=0.5)
    finally:
        busy.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ProviderError, match="cannot reach"):
        check_reachable(f"http://127.0.0.1:{port}/v1", timeout=0.5)


# ---------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_help_and_version_do_not_import_heavy_modules():
    code = (
        "import sys\n"
        "import treesynth.cli.main as cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('litellm', 'aiohttp', 'polars', 'llama_cpp', 'rich', 'textual') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    v = run_cli("--version")
    assert v.returncode == 0 and v.stdout.startswith("treesynth ")


@pytest.mark.slow
def test_a_real_process_exits_with_the_commands_code(tmp_path):
    """``python -m treesynth.cli`` hands the shell what ``main`` returns: argparse's usage error, a bad input's
    one line, and a command that succeeds."""
    usage = run_cli("run", "x", "--no-such-flag", cwd=tmp_path)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert "unrecognized arguments: --no-such-flag" in usage.stderr
    bad = run_cli("run", "x", "--no-ui", "--depth", "-1", cwd=tmp_path)
    _one_line_error(bad, "depth")
    assert bad.returncode == 2
    presets = run_cli("presets", cwd=tmp_path)
    assert presets.returncode == 0 and "gsm8k" in presets.stdout
