"""The commands that read and answer, not run: each turns its flags into one library call (core, analytics)
and prints what comes back. Imports happen inside each command, so ``--help`` stays light."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from treesynth.cli.parser import run_flags


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


def cmd_estimate(args: argparse.Namespace) -> int:
    from treesynth.core.config import build_config
    from treesynth.core.estimate import balance_estimate_lines, estimate_lines
    from treesynth.core.preflight import check_model

    if args.balance:
        from treesynth.core.balance import load_data

        data = load_data(args.balance, args.field, None)
        flags = {**run_flags(args), "task": args.task or "(inferred at run time)", "fields": data.field}
        cfg = build_config(flags={k: v for k, v in flags.items() if k != "size"}, config_file=args.config)
        check_model(cfg)  # the model `balance` would refuse is not priced either
        lines = balance_estimate_lines(cfg, len(data), args.balance, args.route, args.route_batch, args.size, args.target_per_leaf, args.fanout)
    else:
        cfg = build_config(flags=run_flags(args), config_file=args.config)
        check_model(cfg)  # the model `run` would refuse is not priced either
        lines = estimate_lines(cfg, fanout=args.fanout)
    print("\n".join(lines))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from treesynth.core.exporting import export_run

    split = lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if v else None  # noqa: E731
    done = export_run(Path(args.run_dir), args.format, Path(args.out) if args.out else None, prompt_fields=split(args.prompt_fields),
                      response_fields=split(args.response_fields), system=args.system, push_to_hub_repo=args.push_to_hub,
                      note=lambda m: print(f"treesynth: note: {m}", file=sys.stderr))
    if done.url:
        print(done.url)
    print(done.path)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from treesynth.core.presets import list_presets, load_preset

    for name, desc in list_presets().items():
        print(f"{name:12s} {desc}  [fields: {', '.join(load_preset(name).get('fields', []))}]")
    return 0
