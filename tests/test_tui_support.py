"""Shared helpers for the TUI tests (no tests here): scripted services, waiting on a running app."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.fakes import ScriptedTransport
from treesynth.core.config import build_config
from treesynth.core.llm import Completion
from treesynth.core.run import Run
from treesynth.tui.runs import Services


def services(transport=None, runs_root: Path | None = None, **kw) -> Services:
    t = transport if transport is not None else ScriptedTransport()
    return Services(
        transport_factory=lambda: t, preflight=None, price=lambda model, prices=None: (lambda tin, tout: 0.0),
        runs_root=runs_root or Path("runs"), **kw,
    )


def cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 60, "pivots": 6}
    flags.update(kw)
    return build_config(flags=flags)


async def wait_for(pilot, predicate, timeout: float = 30.0, step: float = 0.02, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(step)


async def finished_run(out: Path, transport=None, **kw) -> None:
    """A complete run on disk, made headlessly with the scripted provider."""
    run = Run.create(cfg(**kw), out, transport=transport or ScriptedTransport())
    fin = await run.execute()
    assert fin.status == "complete"


class GatedTransport(ScriptedTransport):
    """Holds some calls until they are released. ``hold(node, step)`` names the gate a call waits
    at (or None to answer at once); by default generation calls wait at gate "gen", so the tree
    grows at once and the samples wait. ``release()`` opens every gate, ``release(name)`` one."""

    def __init__(self, fail_prefix: str | None = None, hold=None, **kw) -> None:
        super().__init__(**kw)
        self.gates: dict[str, asyncio.Event] = {}
        self.opened: set[str] = set()
        self.everything = False
        self.fail_prefix = fail_prefix
        self.hold = hold or (lambda node, step: "gen" if step == "gen" else None)

    def release(self, name: str | None = None) -> None:
        if name is None:
            self.everything = True
            for g in self.gates.values():
                g.set()
        else:
            self.opened.add(name)
            if name in self.gates:
                self.gates[name].set()

    async def __call__(self, req) -> Completion:
        from treesynth.core.errors import TransientProviderError

        node, step, _ = req.slot.split(":")
        node = node.split("~")[0]  # a revised node's slot: "<id>~r<n>"
        if self.fail_prefix and node == self.fail_prefix and step == "pivots":
            raise TransientProviderError("HTTP 503 from the scripted provider")
        gate = self.hold(node, step)
        if gate is True:
            gate = "gen"
        if gate and not self.everything and gate not in self.opened:
            ev = self.gates.setdefault(gate, asyncio.Event())
            await ev.wait()
        return await super().__call__(req)
