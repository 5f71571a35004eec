"""Opening what a run screen shows, from its four sources: a new run, a resumed one (whatever its mode:
the run directory records it), a new balance run, or a run browsed read-only.

Creating or resuming a run touches the disk and imports the engine, and the provider check goes
over the network: all of it runs in threads, so the UI keeps drawing meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from treesynth.core.handle import RunHandle

from .fairness import FairTransport, LoopShare
from .runs import BrowseRun, NewBalance, NewRun, ResumeRun, Services, Source
from .saved_runs import Browsed, load_browse

Say = Callable[[str], None]  # one info line for the log pane


async def open_source(source: Source, services: Services, say: Say) -> RunHandle | Browsed:
    """The live run ``source`` names, created or resumed (its provider checked first where a check is
    due), or, for ``BrowseRun``, what is saved in the run directory. Errors propagate."""
    if isinstance(source, BrowseRun):
        return await asyncio.to_thread(load_browse, source.run_dir)
    if isinstance(source, NewRun):
        return await _new_run(source, services, say)
    if isinstance(source, NewBalance):
        return await _new_balance(source, services, say)
    return await _resume(source, services, say)


async def _new_run(src: NewRun, svc: Services, say: Say) -> RunHandle:
    from treesynth.core.run import Run

    if svc.preflight is not None:
        say(f"checking {src.cfg.model} …")
        await asyncio.to_thread(svc.preflight, src.cfg)
    return await asyncio.to_thread(Run.create, src.cfg, src.out, svc.transport())


async def _new_balance(src: NewBalance, svc: Services, say: Say) -> RunHandle:
    """The CLI has loaded the data and checked the provider."""
    from treesynth.core.balance import BalanceSpec, create_balance_run

    spec = BalanceSpec.parse(src.spec, src.data)
    say(f"balancing {len(src.data):,} rows of {spec.data} ({spec.route} routing)")
    return await asyncio.to_thread(
        create_balance_run, src.data, spec, dict(src.flags), src.out, svc.transport(), svc.embedder, src.config_file
    )


async def _resume(src: ResumeRun, svc: Services, say: Say) -> RunHandle:
    from treesynth.core.run import Run

    say("resuming the run …")
    run = await asyncio.to_thread(Run.resume, src.run_dir, dict(src.overrides), svc.transport(), svc.embedder)
    if svc.preflight is not None:  # the saved config names the provider: check it once the run is open
        try:
            say(f"checking {run.cfg.model} …")
            await asyncio.to_thread(svc.preflight, run.cfg)
        except BaseException:
            run.close()
            raise
    return run


def share_loop(run: RunHandle, budget_s: float) -> LoopShare:
    """Put a ``FairTransport`` in front of the open run's transport, so the engine (on the app's loop)
    leaves the UI a share of the loop during bursts of instant answers; returns the share.

    The wrapping happens here, once the run is open, because only then is the transport known for
    every source: a resumed or balance run's config (model, api_base, executor) comes from its
    directory or its data, and the run builds its default transport from that config."""
    share = LoopShare(budget_s)
    run.client.transport = FairTransport(run.client.transport, share)
    return share


def source_title(source: Source) -> tuple[str, str, str]:
    """(task, model, where) for the title line before the run is open."""
    if isinstance(source, NewRun):
        return source.cfg.task, source.cfg.model, str(source.out)
    if isinstance(source, NewBalance):
        return str(source.flags.get("task", "")), str(source.flags.get("model") or ""), str(source.out)
    return "", "", str(source.run_dir)
