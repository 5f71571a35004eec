"""The terminal UI's entry points: ``treesynth-tui [RUN_DIR]``, and ``treesynth run``/``balance`` without
``--no-ui``. The command line composes the front end here; ``treesynth.tui`` itself knows nothing of it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from treesynth.core.errors import EXIT_INTERRUPTED, ConfigError, TreesynthError
from treesynth.core.reader import is_run_dir
from treesynth.core.rundir import CONFIG, default_out
from treesynth.tui.app import THEMES, TreesynthApp
from treesynth.tui.runs import BrowseRun, NewBalance, NewRun, ResumeRun, Services, Source
from treesynth.tui.saved_runs import run_status

from .main import need_terminal, run_flags

# ---------------------------------------------------------------------------- entry points


def _run_app(app: TreesynthApp) -> int:
    app.run()
    for line in app.report_lines():
        print(line, file=sys.stderr)
    return int(app.return_code or 0)


def _open_from_cli(args: argparse.Namespace, start: Source, services: Services | None) -> int:
    need_terminal()
    services = services or Services()
    services.report_when_done = bool(getattr(args, "report", False))  # --report: as the headless mode does
    return _run_app(TreesynthApp(services=services, start=start))


def resume_from_cli(run_dir: Path, overrides: dict, services: Services | None = None) -> int:
    """``treesynth extend`` without ``--no-ui``: the extension is recorded; the run screen resumes it."""
    return _open_from_cli(argparse.Namespace(), ResumeRun(run_dir, overrides), services)


def run_from_cli(args: argparse.Namespace, services: Services | None = None) -> int:
    """``treesynth run`` without ``--no-ui``: the same flags, validated the same way, then the run screen."""
    from treesynth.core.config import build_config
    from treesynth.core.files import check_run_dir, ensure_new_run_dir

    if args.resume:
        if args.task or args.config or args.out:
            raise ConfigError("--resume takes the run's saved task and config; drop TASK, --config and --out")
        from treesynth.core.modes import check_command

        d = Path(args.resume)
        check_run_dir(d)
        check_command(d, "run")
        source: Source = ResumeRun(d, run_flags(args))
    else:
        cfg = build_config(flags=run_flags(args), config_file=args.config)
        if cfg.tree_from:  # a bad tree is one line here, before the UI starts
            from treesynth.core.treesource import load_given_tree

            load_given_tree(cfg.tree_from, task=cfg.task, fields=cfg.fields, depth=cfg.depth)
        out = Path(args.out) if args.out else default_out(cfg.task)
        ensure_new_run_dir(out)
        source = NewRun(cfg, out)
    return _open_from_cli(args, source, services)


def balance_from_cli(args: argparse.Namespace, source=None, services: Services | None = None) -> int:
    """``treesynth balance`` without ``--no-ui``: the CLI has loaded the data and checked the settings
    (``source`` = (data, spec, flags, out, config_file)), or ``args.resume`` names the run to resume."""
    if args.resume:
        from treesynth.core.files import check_run_dir
        from treesynth.core.modes import check_command

        d = Path(args.resume)
        check_run_dir(d)
        check_command(d, "balance")
        flags = run_flags(args)
        flags.pop("fields", None)
        start: Source = ResumeRun(d, flags)
    else:
        data, spec, flags, out, config_file = source
        start = NewBalance(data, spec, flags, Path(out), config_file)
    return _open_from_cli(args, start, services)


def main(argv: list[str] | None = None) -> int:
    """``treesynth-tui [RUN_DIR]``."""
    from treesynth.core import __version__

    p = argparse.ArgumentParser(prog="treesynth-tui", description="treesynth's terminal UI: start, watch and steer runs.")
    p.add_argument("run_dir", nargs="?", help="open this run: resume it if unfinished, browse it if finished")
    p.add_argument("--browse", action="store_true", help="open RUN_DIR read-only even if it is unfinished")
    p.add_argument("--light", action="store_true", help="start with the light theme (ctrl+t toggles)")
    p.add_argument("--version", action="version", version=f"treesynth {__version__}")
    args = p.parse_args(argv)
    try:
        start: Source | None = None
        if args.run_dir:
            d = Path(args.run_dir)
            if not is_run_dir(d):
                raise TreesynthError(f"{args.run_dir!r} is not a treesynth run (no {CONFIG})")
            start = BrowseRun(d) if args.browse or run_status(d) == "complete" else ResumeRun(d)
        need_terminal("for scripts use: treesynth run TASK --no-ui")
        return _run_app(TreesynthApp(start=start, theme=THEMES[1] if args.light else None))
    except TreesynthError as e:
        print(f"treesynth-tui: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
