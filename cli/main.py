"""The ``treesynth`` command line. Heavy imports (litellm, polars, llama.cpp) happen only
inside the commands that need them, so ``--help`` and ``--version`` answer at once."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from treesynth.core import __version__
from treesynth.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, ConfigError, TreesynthError, exit_code_for


# flag name -> config key; the same keys are valid in a config file
def _json_object(text: str) -> dict[str, Any]:
    """``--extra-body``: a JSON object (argparse turns the ValueError into a one-line usage error)."""
    import json

    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"repeat_penalty\": 1.1}'")
    return v


RUN_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--fields", {"help": "comma-separated sample fields, e.g. question,answer"}),
    ("--preset", {"help": "gsm8k, math, code_alpaca, simpletom, or a preset .toml file"}),
    ("--model", {"help": "litellm model string (default: local/smollm2, the embedded offline model)"}),
    ("--api-base", {"dest": "api_base", "help": "base URL of an OpenAI-compatible server (vLLM, Ollama, ...)"}),
    ("--transport", {"choices": ["auto", "litellm", "http"], "help": "how LLM calls are made: http, a native client for openai/ and hosted_vllm/ models; litellm, any provider; auto (default): http where it applies"}),
    ("--depth", {"type": int, "help": "tree depth (default 3; 0: no tree, plain sampling from the root prompt)"}),
    ("--size", {"type": int, "help": "number of samples in the dataset (default 100)"}),
    ("--pivots", {"type": int, "help": "pivot samples per node (default 12; the embedded model: 6)"}),
    ("--pivots-per-call", {"dest": "pivots_per_call", "type": int, "help": "pivots asked per call (default: all at once; the embedded model: 3)"}),
    ("--samples-per-call", {"dest": "samples_per_call", "type": int, "help": "samples asked for per generation call (default 5; the embedded model: 3)"}),
    ("--concurrency", {"type": int, "help": "most LLM calls in flight (default 16)"}),
    ("--rpm", {"type": int, "help": "requests-per-minute limit"}),
    ("--tpm", {"type": int, "help": "tokens-per-minute limit"}),
    ("--timeout", {"type": float, "help": "seconds per LLM call (default 120)"}),
    ("--max-retries", {"dest": "max_retries", "type": int, "help": "retries per call on transient errors (default 6)"}),
    ("--budget", {"type": float, "help": "stop cleanly once this many USD are spent"}),
    ("--seed", {"type": int, "help": "seed for every random choice and call (default 0)"}),
    ("--temperature", {"type": float, "help": "sampling temperature for generation (default 0.9)"}),
    ("--executor", {"choices": ["local", "ray"], "help": "where LLM calls run: local (default) or ray, a Ray cluster (pip install 'treesynth[ray]')"}),
    ("--ray-address", {"dest": "ray_address", "metavar": "ADDRESS", "help": "Ray cluster to join ('auto': the one on this machine; default: start a local one)"}),
    ("--ray-workers", {"dest": "ray_workers", "type": int, "help": "Ray worker actors (default: one per node)"}),
    ("--small-model", {"dest": "small_model", "action": "store_const", "const": True,
                       "help": "ask in small steps, as for the embedded model (6 pivots, 3 per call, 3 samples per call, 4 values per node): for a small model behind a server"}),
    ("--extra-body", {"dest": "extra_body", "type": _json_object, "metavar": "JSON",
                      "help": "fields added to every request an OpenAI-compatible endpoint gets, e.g. '{\"repeat_penalty\": 1.1}'"}),
    ("--batch", {"action": "store_const", "const": True, "help": "leaf and judge calls through the provider's batch API at batch prices (openai/ and anthropic/ models; tree calls stay interactive)"}),
    ("--batch-linger", {"dest": "batch_linger", "type": float, "metavar": "SECONDS", "help": "seconds without a new call before a batch is sent (default 5)"}),
    ("--judge", {"action": "store_const", "const": True, "help": "a judge model checks every row against its leaf's path; failing rows are written again"}),
    ("--judge-model", {"dest": "judge_model", "metavar": "MODEL", "help": "the judge's model (default: the generation model)"}),
    ("--judge-batch", {"dest": "judge_batch", "type": int, "help": "rows the judge reads per call (default 5; the embedded model: 3)"}),
    ("--dedup-threshold", {"dest": "dedup_threshold", "type": float, "metavar": "COSINE",
                           "help": "semantic dedup: a new row within this cosine of an accepted row is written again (presets: 0.92)"}),
]


def _add_run_options(p: argparse.ArgumentParser) -> None:
    for flag, kw in RUN_OPTIONS:
        p.add_argument(flag, default=None, **kw)
    p.add_argument("--config", help="YAML or TOML file with the same keys (flags override it)")
    p.add_argument("--no-cache", dest="no_cache", action="store_true", help="do not reuse cached responses")
    p.add_argument("--no-dedup", dest="no_dedup", action="store_true", help="exact duplicates only, no semantic dedup (a preset turns it on)")


def run_flags(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, kw in RUN_OPTIONS:
        key = kw.get("dest") or flag.lstrip("-").replace("-", "_")
        v = getattr(args, key, None)
        if v is not None:
            out[key] = v
    if getattr(args, "no_cache", False):
        out["cache"] = False
    if getattr(args, "no_dedup", False):
        out["dedup_threshold"] = 0.0
    if getattr(args, "task", None) is not None:
        out["task"] = args.task
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="treesynth",
        description="Turn one sentence into a large, diverse, tree-partitioned dataset (TreeSynth).",
    )
    p.add_argument("--version", action="version", version=f"treesynth {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="grow a tree and synthesise a dataset", description="Grow a TreeSynth tree for TASK and synthesise --size samples.")
    r.add_argument("task", nargs="?", help="the task in one sentence (optional with --resume or a preset/config that has one)")
    _add_run_options(r)
    r.add_argument("--out", help="run directory (default runs/<slug>-<timestamp>); never overwritten")
    r.add_argument("--resume", metavar="DIR", help="continue an interrupted run")
    r.add_argument("--no-ui", dest="no_ui", action="store_true", help="headless: progress on stderr")
    r.add_argument("--json-events", dest="json_events", action="store_true", help="headless, events as JSON lines on stdout")
    r.add_argument("--report", action="store_true", help="build RUN_DIR/report.html (treesynth report) when the run completes")
    r.add_argument("--baseline", action="store_true",
                   help="when the run completes, make its plain-sampling baseline (treesynth baseline) before any report")

    e = sub.add_parser("estimate", help="expected calls, tokens and cost, before spending anything")
    e.add_argument("task", nargs="?")
    _add_run_options(e)
    e.add_argument("--fanout", type=float, help="assumed children per node (default max_values/2)")
    e.add_argument("--balance", metavar="DATA", help="estimate a `treesynth balance` of this data file instead")
    e.add_argument("--route", choices=["llm", "embed"], default="embed")
    e.add_argument("--route-batch", dest="route_batch", type=int, default=25)
    e.add_argument("--field")
    e.add_argument("--target-per-leaf", dest="target_per_leaf", type=int)

    t = sub.add_parser("tree", help="print a run's tree with sample counts")
    t.add_argument("run_dir")
    t.add_argument("--max-depth", type=int, default=None)

    x = sub.add_parser("export", help="export a run's dataset")
    x.add_argument("run_dir")
    x.add_argument("--format", choices=["jsonl", "parquet", "hf", "chat", "alpaca"], default="jsonl",
                   help="jsonl, parquet; chat (OpenAI/TRL messages), alpaca (instruction/input/output); hf (a datasets directory with a dataset card)")
    x.add_argument("--out", help="destination (default: in the run directory)")
    x.add_argument("--prompt-fields", dest="prompt_fields", help="chat/alpaca: fields the prompt is made of, comma-separated (default: the preset's, else all but the last)")
    x.add_argument("--response-fields", dest="response_fields", help="chat/alpaca: fields the response is made of (default: the preset's, else the last)")
    x.add_argument("--system", help="chat: a system message before every conversation")
    x.add_argument("--push-to-hub", dest="push_to_hub", metavar="REPO", help="hf: also push the dataset and its card to this Hub repository (token from HF_TOKEN)")

    b = sub.add_parser(
        "balance", help="rebalance an existing dataset with its own tree",
        description="Grow a tree from DATA, route every row to a leaf, downsample crowded leaves and synthesise into sparse ones.",
    )
    b.add_argument("data", nargs="?", help="JSONL, Parquet or CSV file")
    b.add_argument("--field", help="text column used for pivots and routing (default: question, else the first text column)")
    b.add_argument("--fields", help="columns of a synthesised row (default: --field)")
    b.add_argument("--task", help="one-sentence description (default: inferred from the data and shown)")
    b.add_argument("--target-per-leaf", dest="target_per_leaf", type=int, help="rows per leaf after balancing")
    b.add_argument("--size", type=int, help="rows after balancing, split evenly over leaves (default: the input's size)")
    b.add_argument("--route", choices=["llm", "embed"], default="embed", help="route rows by LLM classification or by embedding similarity (default embed)")
    b.add_argument("--route-batch", dest="route_batch", type=int, default=25, help="rows per LLM routing call (default 25)")
    b.add_argument("--embedder", help="sentence-transformers model name or local path for routing and near-duplicates")
    for flag in ("--model", "--api-base", "--transport", "--depth", "--pivots", "--samples-per-call", "--concurrency", "--rpm", "--tpm", "--timeout", "--max-retries", "--budget", "--seed", "--temperature", "--dedup-threshold"):
        kw = dict(next(k for f, k in RUN_OPTIONS if f == flag))
        b.add_argument(flag, default=None, **kw)
    b.add_argument("--no-dedup", dest="no_dedup", action="store_true", help="new rows may nearly repeat real rows and each other (default: not within cosine 0.92)")
    b.add_argument("--config", help="YAML or TOML file with run keys (model, depth, ...)")
    b.add_argument("--no-cache", dest="no_cache", action="store_true")
    b.add_argument("--out", help="run directory (default runs/balance-<name>-<timestamp>)")
    b.add_argument("--resume", metavar="DIR", help="continue an interrupted balance run")
    b.add_argument("--no-ui", dest="no_ui", action="store_true", help="headless: progress on stderr")
    b.add_argument("--json-events", dest="json_events", action="store_true")
    b.add_argument("--report", action="store_true", help="build RUN_DIR/report.html comparing the data before and after balancing")

    bl = sub.add_parser(
        "baseline", help="the run's plain-sampling baseline: same model, settings and size, no tree (RUN_DIR/baseline)",
        description="Generate as many rows as RUN_DIR holds with the same model, fields, preset, temperature, samples per call "
        "and quality gates, but no tree: every call is made from the root prompt alone (the TreeSynth paper's temperature-sampling "
        "baseline). It goes to RUN_DIR/baseline, a run of its own (its calls and cost counted apart; run again to resume); "
        "treesynth report RUN_DIR then compares the two.",
    )
    bl.add_argument("run_dir")
    bl.add_argument("--api-base", dest="api_base", help="base URL of an OpenAI-compatible server (default: the run's)")
    bl.add_argument("--budget", type=float, help="stop cleanly once the baseline has spent this many USD")
    bl.add_argument("--concurrency", type=int, help="calls in flight")
    bl.add_argument("--json-events", dest="json_events", action="store_true", help="events as JSON lines on stdout")

    j = sub.add_parser(
        "judge", help="judge a run's rows against their leaves; failing rows are written again",
        description="Judge every row of RUN_DIR that has no verdict yet (a run made without --judge, or one stopped while judging); "
        "rows that fail are replaced in their leaf, so the dataset keeps its size.",
    )
    j.add_argument("run_dir")
    j.add_argument("--judge-model", dest="judge_model", metavar="MODEL", help="the judge's model (default: the run's model)")
    j.add_argument("--judge-batch", dest="judge_batch", type=int, help="rows the judge reads per call")
    j.add_argument("--model", help="the run's model for rewriting failed rows (default: the one it was made with)")
    j.add_argument("--api-base", dest="api_base", help="base URL of an OpenAI-compatible server")
    j.add_argument("--budget", type=float, help="stop cleanly once this many USD are spent (the run's total)")
    j.add_argument("--concurrency", type=int, help="most LLM calls in flight")
    j.add_argument("--json-events", dest="json_events", action="store_true", help="events as JSON lines on stdout")
    sub.add_parser("presets", help="list the shipped presets")

    rp = sub.add_parser(
        "report", help="diversity metrics, coverage and UMAP/t-SNE maps as one offline HTML file",
        description="Diversity metrics, leaf coverage and embedding maps of a run or dataset, compared with others: "
        "one self-contained HTML file plus its numbers as JSON next to it (metrics.json for report.html, else NAME.metrics.json for --out NAME.html).",
    )
    rp.add_argument("input", metavar="RUN_DIR_OR_FILE", help="a run directory, or a JSONL/JSON/Parquet/CSV dataset")
    rp.add_argument("--compare", nargs="+", action="extend", metavar="FILE_OR_RUN", default=[], help="datasets or runs to compare with")
    rp.add_argument("--field", help="the text field (default: the run's first text field, else 'question', else the first text column)")
    rp.add_argument("--out", help="the HTML file (default RUN_DIR/report.html, or ./report.html for a file)")
    rp.add_argument("--sample", type=int, help="use a uniform random sample of N rows of each dataset, for every metric")
    rp.add_argument("--embed-sample", dest="embed_sample", type=int, metavar="N",
                    help="embed at most N rows of each dataset (a seeded uniform random sample) for the embedding metrics and maps; "
                    "counts, duplicates, leaf coverage counts and quality stay over all rows (default 10000, or every row with --sample; "
                    "0: embed every row)")
    rp.add_argument("--seed", type=int, default=0, help="seed for every sample and map (default 0)")
    rp.add_argument("--embedder", metavar="NAME_OR_PATH", help="a local sentence-transformers model folder (default all-MiniLM-L6-v2)")
    rp.add_argument("--precision", choices=["auto", "int8", "bf16", "fp32"], default="auto",
                    help="embedding backend (auto: int8 ONNX where onnxruntime is installed, else bf16 where the CPU has bf16 units, else fp32)")
    rp.add_argument("--map-points", dest="map_points", type=int, default=10_000,
                    help="points fitted and drawn in each map, shared among the datasets (default 10000, at most 50000)")
    rp.add_argument("--no-embedding-cache", dest="no_embedding_cache", action="store_true", help="neither read nor write cached embeddings")
    rp.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="where embeddings are computed: local (default) or ray (Ray Data; with --sample, the full-data metrics stream over every row)")
    rp.add_argument("--ray-address", dest="ray_address", metavar="ADDRESS", help="Ray cluster to join ('auto': the one on this machine; default: start a local one)")
    return p


def say(message: str) -> None:
    """One line on stderr that never raises: with stderr a closed pipe (``... 2>&1 | tee log``, then Ctrl-C
    ends tee) a message is dropped, and later ones go to /dev/null instead of failing again."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # BrokenPipeError, or stderr closed
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code; it never calls ``sys.exit``, so a program (or a test) may
    call it in-process. Output goes to ``sys.stdout``/``sys.stderr`` as they are at call time."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors: argparse has printed its answer and exits
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILED)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        commands = {"run": cmd_run, "estimate": cmd_estimate, "tree": cmd_tree, "export": cmd_export, "presets": cmd_presets, "balance": cmd_balance,
                    "report": cmd_report, "judge": cmd_judge, "baseline": cmd_baseline}
        return commands[args.command](args)
    except TreesynthError as e:
        say(f"treesynth: error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        say("treesynth: interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a bug: one line, traceback on request
        if os.environ.get("TREESYNTH_DEBUG"):
            raise
        say(f"treesynth: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} (TREESYNTH_DEBUG=1 shows the traceback)")
        return EXIT_FAILED


# ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from treesynth.core.config import build_config
    from treesynth.core.preflight import check_provider

    if not args.no_ui and not args.json_events:
        if args.baseline:
            raise ConfigError("--baseline runs after a headless run: add --no-ui (or run treesynth baseline RUN_DIR after the TUI)")
        return _launch_tui(args)
    from treesynth.core.engine import Run
    from treesynth.core.rundir import default_out

    if args.resume:
        if args.task or args.config or args.out:
            raise ConfigError("--resume takes the run's saved task and config; drop TASK, --config and --out")
        run = _resume_checked(Path(args.resume), run_flags(args))
    else:
        cfg = build_config(flags=run_flags(args), config_file=args.config)
        check_provider(cfg)
        out = Path(args.out) if args.out else default_out(cfg.task)
        run = Run.create(cfg, out)
    rc = _execute(run, json_events=args.json_events)
    if rc == 0 and args.baseline:
        rc = _baseline(run.store.root, {}, json_events=args.json_events)
    if rc == 0 and args.report:
        _analytics_report().report_for_run(run.store.root)
    return rc


def cmd_baseline(args: argparse.Namespace) -> int:
    overrides = {"api_base": args.api_base, "budget": args.budget, "concurrency": args.concurrency}
    return _baseline(Path(args.run_dir), overrides, json_events=args.json_events)


def _baseline(run_dir: Path, overrides: dict[str, Any], json_events: bool) -> int:
    """The run's baseline into RUN_DIR/baseline: made from the run's config and row count, or resumed."""
    from treesynth.core.baseline import baseline_config, baseline_dir, check_baseline_source
    from treesynth.core.engine import Run
    from treesynth.core.preflight import check_provider
    from treesynth.core.rundir import CONFIG
    from treesynth.core.store import RunStore

    check_baseline_source(run_dir)
    out = baseline_dir(run_dir)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if (out / CONFIG).is_file():
        run = _resume_checked(out, overrides)
    else:
        store = RunStore.open(run_dir)
        try:
            saved = store.read_config()
            rows = sum(1 for _ in store.iter_samples())
            size = int(saved.get("size", 0))
            rows = min(rows, size) if size else rows
        finally:
            store.close()
        cfg = baseline_config({**saved, **overrides}, rows)
        check_provider(cfg)
        say(f"treesynth: baseline: {rows:,} rows from the root prompt alone (no tree) with {cfg.model}, into {out}")
        run = Run.create(cfg, out)
    return _execute(run, json_events=json_events)


def _resume_checked(run_dir: Path, overrides: dict[str, Any]):
    """``Run.resume`` with the provider checked before anything runs (the run closed if it fails)."""
    from treesynth.core.engine import Run
    from treesynth.core.preflight import check_provider

    run = Run.resume(run_dir, overrides=overrides)
    try:
        check_provider(run.cfg)
    except BaseException:
        run.close()
        raise
    return run


def cmd_judge(args: argparse.Namespace) -> int:
    """``treesynth judge RUN_DIR``: the run carried on with the judge on; rows without a verdict are
    judged first, failed ones rewritten, and the dataset written again at its size."""
    from treesynth.core.rundir import BALANCE, CONFIG

    root = Path(args.run_dir)
    if not (root / CONFIG).is_file():
        raise ConfigError(f"{str(root)!r} is not a treesynth run directory (no config.json)")
    if (root / BALANCE).exists():
        raise ConfigError(f"{str(root)!r} is a balance run; treesynth judge works on runs made by treesynth run")
    overrides = {"judge": True, "judge_model": args.judge_model, "judge_batch": args.judge_batch, "model": args.model,
                 "api_base": args.api_base, "budget": args.budget, "concurrency": args.concurrency}
    return _execute(_resume_checked(root, overrides), json_events=args.json_events)


def _analytics_report():
    """The analytics package, imported when a report is asked for (it loads numpy and plotly: not for --help)."""
    from treesynth.analytics import report

    return report


def cmd_report(args: argparse.Namespace) -> int:
    """``treesynth report``: the report's options from the flags; prints the HTML file's path."""
    report = _analytics_report()
    opts = report.ReportOptions(
        inputs=(args.input, *args.compare), out=args.out, field=args.field, sample=args.sample, embed_sample=args.embed_sample, seed=args.seed,
        embedder=args.embedder, precision=args.precision, map_points=args.map_points, cache=not args.no_embedding_cache,
        executor=args.executor, ray_address=args.ray_address,
    )
    print(report.run_report(opts).html_path)
    return 0


def _execute(run, json_events: bool) -> int:
    from treesynth.cli.console import HeadlessDisplay, JsonEvents, summary

    display = JsonEvents() if json_events else HeadlessDisplay()
    stops = {"n": 0}
    command = run.kind

    async def main() -> Any:
        loop = asyncio.get_running_loop()

        def on_signal(signame: str) -> None:
            # stop first, then say so: the message may fail (stderr a closed pipe) but the stop may not
            stops["n"] += 1
            if stops["n"] == 1:
                run.request_stop()
                say(f"\ntreesynth: {signame}: stopping after in-flight calls (again to quit now); state is saved")
            else:
                try:
                    say(f"treesynth: quitting now; resume with: treesynth {command} --resume {run.store.root}")
                finally:
                    os._exit(EXIT_INTERRUPTED)  # every write is append-only or an atomic rename: nothing to corrupt

        for sig, name in ((signal.SIGINT, "interrupt"), (signal.SIGTERM, "terminated")):
            loop.add_signal_handler(sig, on_signal, name)
        return await run.execute(display)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        fin = asyncio.run(main())
    finally:
        for sig, handler in saved.items():  # asyncio resets them to the defaults: give the caller back its own
            if handler is not None:
                signal.signal(sig, handler)
        try:
            display.close()
        except (OSError, ValueError):  # its stream is a closed pipe: the run's outcome matters, not the display
            pass
    say(summary(fin, command, run.quality()))
    info = run.summary()
    if info:
        b, a = info["before"], info["after"]
        say(
            f"balance:  {info['input_rows']} rows in {info['leaves']} leaves -> {info['rows_after']} "
            f"({info['dropped']} dropped, {info['synthesised']} synthesised); occupancy entropy {b['entropy']} -> {a['entropy']}, "
            f"Gini {b['gini']} -> {a['gini']}, empty leaves {b['empty']} -> {a['empty']}; see before_after.csv"
        )
    return exit_code_for(fin.status)


def need_terminal(hint: str = "run with --no-ui (or --json-events)") -> None:
    """The interactive UI's precondition, checked before anything is read, asked or written."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TreesynthError(f"the interactive UI needs a terminal; {hint}")


def _launch_tui(args: argparse.Namespace, balance: bool = False, source: Any = None) -> int:
    from treesynth.cli import tui  # Textual loads only when the interactive UI is asked for

    if balance:
        return tui.balance_from_cli(args, source)
    return tui.run_from_cli(args)


def cmd_balance(args: argparse.Namespace) -> int:
    from treesynth.core.balance import BalanceRun, BalanceSpec, fallback_task, infer_task, load_data
    from treesynth.core.config import build_config
    from treesynth.core.files import ensure_new_run_dir
    from treesynth.core.preflight import check_provider
    from treesynth.core.rundir import default_out

    ui = not args.no_ui and not args.json_events
    if ui:
        need_terminal()  # before any data is read or any call made
    flags = run_flags(args)
    flags.pop("fields", None)
    if args.resume:
        if args.data or args.out or args.config:
            raise ConfigError("--resume takes the saved data and settings; drop DATA, --config and --out")
        if ui:
            return _launch_tui(args, balance=True)
        run = BalanceRun.resume(Path(args.resume), overrides=flags)
    else:
        if not args.data:
            raise ConfigError("give the DATA file to balance (JSONL, Parquet or CSV)")
        fields = tuple(f.strip() for f in args.fields.split(",") if f.strip()) if args.fields else None
        data = load_data(args.data, args.field, fields)
        probe = build_config(flags={**flags, "task": args.task or "(inferring)", "fields": ",".join(data.fields)}, config_file=args.config)
        check_provider(probe)
        task = args.task
        if not task:
            task = asyncio.run(infer_task(data, {k: v for k, v in flags.items() if k != "task"}, seed=probe.seed))
            if task == fallback_task(data):
                say(f"treesynth: could not infer a task from the data; using: {task} (pass --task to describe the rows)")
            else:
                say(f"treesynth: inferred task: {task} (pass --task to change it)")
        spec = BalanceSpec.parse({
            "data": str(Path(args.data).resolve()), "field": data.field, "fields": data.fields, "route": args.route,
            "route_batch": args.route_batch, "target_per_leaf": args.target_per_leaf, "size": args.size, "embedder": args.embedder,
        }, data)
        out = Path(args.out) if args.out else default_out(Path(args.data).stem, prefix="balance-")
        ensure_new_run_dir(out)
        if ui:
            return _launch_tui(args, balance=True, source=(data, spec, {**flags, "task": task}, out, args.config))
        run = BalanceRun.create(data, spec, {**flags, "task": task}, out, config_file=args.config)
    rc = _execute(run, json_events=args.json_events)
    if rc == 0 and args.report:
        _analytics_report().report_for_run(run.store.root)
    return rc


def cmd_estimate(args: argparse.Namespace) -> int:
    from treesynth.core.config import build_config
    from treesynth.core.estimate import estimate
    from treesynth.core.llm.pricing import call_price
    from treesynth.core.preflight import check_model
    from treesynth.core.prompts import Prompts

    if args.balance:
        from treesynth.core.balance import load_data
        from treesynth.core.estimate import estimate_balance

        data = load_data(args.balance, args.field, None)
        flags = {**run_flags(args), "task": args.task or "(inferred at run time)", "fields": data.field}
        cfg = build_config(flags={k: v for k, v in flags.items() if k != "size"}, config_file=args.config)
        check_model(cfg)  # the model `balance` would refuse is not priced either
        leaves_guess = max(1, int(round(min(float(len(data)), max(2.0, cfg.max_values / 2) ** cfg.depth))))
        target = args.size or (args.target_per_leaf * leaves_guess if args.target_per_leaf else len(data))
        est = estimate_balance(cfg, len(data), args.route, args.route_batch, target, fanout=args.fanout, price=call_price(cfg.model))
        print(f"balance:        {len(data):,} rows of {args.balance} ({args.route} routing)")
        _print_estimate(cfg, est, f"{est.tree_calls:,} growing and routing, ~{est.synth_calls:,} synthesising, assuming a quarter of {target:,} rows are new")
        return 0
    cfg = build_config(flags=run_flags(args), config_file=args.config)
    check_model(cfg)  # the model `run` would refuse is not priced either
    price = call_price(cfg.model)
    est = estimate(cfg, Prompts(cfg), fanout=args.fanout, price=price)
    print(f"task:           {cfg.task}")
    print(f"model:          {cfg.model}")
    judging = f", {est.judge_calls:,} judging them" if est.judge_calls else ""
    _print_estimate(cfg, est, f"{est.tree_calls:,} growing the tree, {est.synth_calls:,} generating {cfg.size:,} samples{judging}")
    from treesynth.core.llm.pricing import batch_call_price
    from treesynth.core.progress import fmt_cost

    batch_price = batch_call_price(cfg.model)
    if price is not None and batch_price is not None:
        print(f"with --batch:   ~{fmt_cost(est.batch_cost(price, batch_price))} (the tree's calls interactive, the rest at batch prices)"
              + (" (chosen)" if cfg.batch else ""))
    elif cfg.batch:
        print("with --batch:   no batch prices for this model in litellm's table")
    return 0


def _print_estimate(cfg, est, calls_detail: str) -> None:
    from treesynth.core.progress import fmt_cost

    print(f"tree:           depth {cfg.depth}, ~{est.internal_nodes} expansions, ~{est.leaves} leaves (fan-out {est.assumed_fanout:g})")
    print(f"calls:          ~{est.calls:,} ({calls_detail})")
    print(f"tokens:         ~{est.tokens_in:,} in, ~{est.tokens_out:,} out")
    print(f"cost:           ~{fmt_cost(est.cost_usd)}" + ("" if est.cost_usd is not None else " (model not in litellm's price table)"))


def cmd_tree(args: argparse.Namespace) -> int:
    from treesynth.core.reader import RunReader
    from treesynth.core.treeview import render_tree

    reader = RunReader(Path(args.run_dir))
    tree = reader.tree()
    counts, targets = reader.rows_per_leaf()
    if reader.is_balance:  # routed and kept rows are counted per leaf only
        counts = {k: v for k, v in counts.items() if k in tree.nodes and not tree.get(k).children}
    print(render_tree(tree, counts, max_depth=args.max_depth, leaf_targets=targets))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from treesynth.core.card import dataset_card
    from treesynth.core.errors import RunDirError
    from treesynth.core.export import card_facts, hub_token, push_to_hub, write_hf, write_jsonl, write_parquet, write_records
    from treesynth.core.store import RunStore
    from treesynth.core.training import alpaca_record, chat_record, roles

    fmt = args.format
    if args.push_to_hub and fmt != "hf":
        raise ConfigError("--push-to-hub goes with --format hf")
    token = hub_token() if args.push_to_hub else ""
    if (args.prompt_fields or args.response_fields or args.system) and fmt not in ("chat", "alpaca"):
        raise ConfigError("--prompt-fields, --response-fields and --system go with --format chat or alpaca")
    run_dir = Path(args.run_dir)
    store = RunStore.open(run_dir)
    try:
        config = store.read_config()
        size = int(config.get("size", 0))
        state = store.read_state()
        src = store.p("dataset.jsonl")
        if not src.exists():
            if state.get("status") != "complete":
                print(f"treesynth: note: the run is {state.get('status', 'unfinished')}; exporting the {sum(1 for _ in store.iter_samples())} samples so far", file=sys.stderr)
            src = store.p(".export.jsonl")
            write_jsonl(store.iter_samples(), src, limit=size or None)
        default = {"jsonl": "export.jsonl", "parquet": "export.parquet", "hf": "hf_dataset", "chat": "export.chat.jsonl", "alpaca": "export.alpaca.jsonl"}
        dest = Path(args.out) if args.out else run_dir / default[fmt]
        if dest.exists() and fmt == "hf":
            raise RunDirError(f"{str(dest)!r} already exists")
        split = lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if v else ()  # noqa: E731
        fields = tuple(config.get("fields") or ())
        if fmt in ("chat", "alpaca"):
            strict = bool(args.prompt_fields or args.response_fields)
            r = roles(fields, split(args.prompt_fields) or (() if strict else tuple(config.get("prompt_fields") or ())),
                      split(args.response_fields) or (() if strict else tuple(config.get("response_fields") or ())),
                      args.system if args.system is not None else config.get("system_prompt"), strict=strict)
            convert = chat_record if fmt == "chat" else alpaca_record
            write_records(iter_jsonl(src), dest, lambda row: convert(row, r))
        elif fmt == "jsonl":
            write_jsonl(iter_jsonl(src), dest)
        elif fmt == "parquet":
            write_parquet(src, dest)
        else:
            try:
                r = roles(fields, tuple(config.get("prompt_fields") or ()), tuple(config.get("response_fields") or ()))
                pr, rs = r.prompt, r.response
            except ConfigError:
                pr, rs = (), ()
            metrics = _report_metrics(run_dir)
            rejected = iter_jsonl(store.p("rejected.jsonl")) if store.p("rejected.jsonl").exists() else iter(())
            facts = card_facts(config, iter_jsonl(src), store.read_verdicts(), rejected, metrics, pr, rs, version=__version__,
                               data_files="*.arrow")
            ds = write_hf(src, dest, dataset_card(facts))
            if args.push_to_hub:
                from dataclasses import replace

                url = push_to_hub(ds, args.push_to_hub, dataset_card(replace(facts, data_files="data/train-*")), token)
                print(url)
        print(dest)
    finally:
        store.close()
    return 0


def _report_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics from its report's metrics.json (the first dataset), or nothing."""
    import orjson

    p = run_dir / "metrics.json"
    try:
        doc = orjson.loads(p.read_bytes())
        return dict(doc["datasets"][0]["metrics"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return {}


def iter_jsonl(path: Path):
    import orjson

    with open(path, "rb") as f:
        for line in f:
            yield orjson.loads(line)


def cmd_presets(args: argparse.Namespace) -> int:
    from treesynth.core.presets import list_presets, load_preset

    for name, desc in list_presets().items():
        print(f"{name:12s} {desc}  [fields: {', '.join(load_preset(name).get('fields', []))}]")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
