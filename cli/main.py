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

from treesynth.cli.commands import _analytics_report, cmd_estimate, cmd_export, cmd_presets, cmd_report
from treesynth.cli.parser import build_parser, run_flags
from treesynth.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, ConfigError, TreesynthError, exit_code_for


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
                    "report": cmd_report, "judge": cmd_judge, "baseline": cmd_baseline, "extend": cmd_extend}
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
    from treesynth.core.run import Run
    from treesynth.core.rundir import default_out

    if args.resume:
        if args.task or args.config or args.out:
            raise ConfigError("--resume takes the run's saved task and config; drop TASK, --config and --out")
        run = _resume_checked(Path(args.resume), run_flags(args))
    else:
        cfg = build_config(flags=run_flags(args), config_file=args.config)
        if cfg.tree_from:  # a bad tree is one line before the provider is asked anything (Run.create checks it again)
            from treesynth.core.treesource import load_given_tree

            load_given_tree(cfg.tree_from, task=cfg.task, fields=cfg.fields, depth=cfg.depth)
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
    overrides = {"api_base": args.api_base, "budget": args.budget, "concurrency": args.concurrency, "price_in": args.price_in, "price_out": args.price_out}
    return _baseline(Path(args.run_dir), overrides, json_events=args.json_events)


def _baseline(run_dir: Path, overrides: dict[str, Any], json_events: bool) -> int:
    """The run's baseline into RUN_DIR/baseline: made from the run's config and row count, or resumed."""
    from treesynth.core.baseline import prepare_baseline
    from treesynth.core.preflight import check_provider
    from treesynth.core.run import Run

    plan = prepare_baseline(run_dir, overrides)
    if plan.config is None:
        run = _resume_checked(plan.out, plan.overrides)
    else:
        check_provider(plan.config)
        say(f"treesynth: baseline: {plan.rows:,} rows from the root prompt alone (no tree) with {plan.config.model}, into {plan.out}")
        run = Run.create(plan.config, plan.out)
    return _execute(run, json_events=json_events)


def cmd_extend(args: argparse.Namespace) -> int:
    """``treesynth extend RUN_DIR --size N``: the new total recorded (core/extend.py), then the run resumed, which
    re-splits its quotas and fills them; ``--baseline`` then tops the baseline up to the run's rows."""
    from treesynth.core.extend import record_extension

    overrides = {"model": args.model, "api_base": args.api_base, "budget": args.budget, "concurrency": args.concurrency,
                 "price_in": args.price_in, "price_out": args.price_out}
    root = Path(args.run_dir)
    if not args.no_ui and not args.json_events:
        if args.baseline:
            raise ConfigError("--baseline runs after a headless extend: add --no-ui (or run treesynth baseline RUN_DIR after the TUI)")
        need_terminal()
    before = record_extension(root, args.size)
    if before != args.size:
        say(f"treesynth: extending {root} from {before:,} to {args.size:,} rows on the same tree")
    if not args.no_ui and not args.json_events:
        from treesynth.cli import tui

        return tui.resume_from_cli(root, overrides)
    rc = _execute(_resume_checked(root, overrides), json_events=args.json_events)
    if rc == 0 and args.baseline:
        rc = _baseline(root, {k: overrides[k] for k in ("api_base", "budget", "concurrency", "price_in", "price_out")}, json_events=args.json_events)
    return rc


def _resume_checked(run_dir: Path, overrides: dict[str, Any], command: str | None = "run"):
    """``Run.resume`` with the provider checked before anything runs (the run closed if it fails); a run
    is resumed by its own ``command`` (None: any, e.g. ``treesynth judge``, which its mode may refuse)."""
    from treesynth.core.modes import check_command
    from treesynth.core.preflight import check_provider
    from treesynth.core.run import Run

    if command is not None:
        check_command(run_dir, command)
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
    from treesynth.core.rundir import CONFIG

    root = Path(args.run_dir)
    if not (root / CONFIG).is_file():
        raise ConfigError(f"{str(root)!r} is not a treesynth run directory (no config.json)")
    overrides = {"judge": True, "judge_model": args.judge_model, "judge_batch": args.judge_batch, "model": args.model,
                 "api_base": args.api_base, "budget": args.budget, "concurrency": args.concurrency, "price_in": args.price_in,
                 "price_out": args.price_out}
    return _execute(_resume_checked(root, overrides, command=None), json_events=args.json_events)


def _execute(run, json_events: bool) -> int:
    from treesynth.cli.console import HeadlessDisplay, JsonEvents
    from treesynth.core.progress import format_rows

    display = JsonEvents() if json_events else HeadlessDisplay()
    stops = {"n": 0}
    command = run.command

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
    say(format_rows(run.summary_rows(fin)))
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
    from treesynth.core.balance import create_balance_run, prepare_balance
    from treesynth.core.files import ensure_new_run_dir
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
        run = _resume_checked(Path(args.resume), flags, command="balance")
    else:
        if not args.data:
            raise ConfigError("give the DATA file to balance (JSONL, Parquet or CSV)")
        fields = tuple(f.strip() for f in args.fields.split(",") if f.strip()) if args.fields else None
        setup = asyncio.run(prepare_balance(
            args.data, {**flags, "task": args.task}, field=args.field, fields=fields, route=args.route, route_batch=args.route_batch,
            target_per_leaf=args.target_per_leaf, size=args.size, embedder=args.embedder, config_file=args.config,
        ))
        if setup.inferred_task is not None:
            if setup.task_is_fallback:
                say(f"treesynth: could not infer a task from the data; using: {setup.inferred_task} (pass --task to describe the rows)")
            else:
                say(f"treesynth: inferred task: {setup.inferred_task} (pass --task to change it)")
        out = Path(args.out) if args.out else default_out(Path(args.data).stem, prefix="balance-")
        ensure_new_run_dir(out)
        if ui:
            return _launch_tui(args, balance=True, source=(setup.data, setup.spec, setup.flags, out, args.config))
        run = create_balance_run(setup.data, setup.spec, setup.flags, out, config_file=args.config)
    rc = _execute(run, json_events=args.json_events)
    if rc == 0 and args.report:
        _analytics_report().report_for_run(run.store.root)
    return rc


def cmd_tree(args: argparse.Namespace) -> int:
    from treesynth.core.treeout import tree_output

    if args.examples < 0:
        raise ConfigError("--examples must be 0 or more")
    print(tree_output(Path(args.run_dir), args.format, max_depth=args.max_depth, examples=args.examples))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
