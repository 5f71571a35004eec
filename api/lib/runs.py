"""Runs from Python: ``generate`` / ``resume`` / ``balance`` block until the dataset is made (in a script
and inside a running notebook loop alike, see loop.py); ``Run`` is the same thing for async code, with
the engine's typed events and the live run's controls."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from treesynth.core import events as ev
from treesynth.core.config import RunConfig, build_config
from treesynth.core.engine.mode import Embed, ModeFactory
from treesynth.core.errors import ConfigError, SteeringError
from treesynth.core.handle import Steerable
from treesynth.core.llm import Transport
from treesynth.core.preflight import check_provider
from treesynth.core.run import Run as CoreRun
from treesynth.core.rundir import default_out

from .dataset import Dataset
from .loop import run_blocking
from .progress import ProgressBar

PathLike = str | os.PathLike[str]
EventCallback = Callable[[ev.Event], None]


def config(task: str | None = None, *, preset: str | None = None, config_file: PathLike | None = None, **options: Any) -> RunConfig:
    """A run's settings from keyword arguments, merged and checked exactly as the CLI does (defaults <
    preset < config file < these): lists as lists (``fields=["question", "answer"]``), one-line
    ``ConfigError`` on a bad value."""
    flags: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if task is not None:
        flags["task"] = task
    if preset is not None:
        flags["preset"] = preset
    return build_config(flags=flags, config_file=Path(config_file) if config_file is not None else None)


_make_config = config  # ``generate`` takes a ``config`` argument of its own


class Run:
    """One run, for async code::

        async with treesynth.Run(treesynth.config("math word problems", size=50), "runs/math") as run:
            async for event in run.events():
                ...
        dataset = run.dataset

    ``Run(resume="runs/math")`` carries an interrupted run on. Opening checks the provider first (model known,
    key present, endpoint reachable) and raises ``treesynth.errors.ProviderError`` instead of starting.
    While it runs: ``pause()``, ``unpause()``, ``stop()``, and the tree edits (``prune``, ``add_value``,
    ``rename_value``, ``remove_value``, ``reexpand``)."""

    def __init__(
        self, config: RunConfig | None = None, out: PathLike | None = None, *, resume: PathLike | None = None,
        overrides: dict[str, Any] | None = None, mode: ModeFactory | None = None, transport: Transport | None = None,
        embed: Embed | None = None, check: bool = True,
    ) -> None:
        if (config is None) == (resume is None):
            raise ConfigError("give a config for a new run, or resume=RUN_DIR to carry one on (not both)")
        check = check and transport is None  # a given transport is the caller's to vouch for
        if resume is not None:
            run_dir, changes = Path(resume), dict(overrides or {})

            def opener() -> CoreRun:
                run = CoreRun.resume(run_dir, overrides=changes, transport=transport, embed=embed, mode=mode)
                try:
                    if check:
                        check_provider(run.cfg)
                except BaseException:
                    run.close()
                    raise
                return run
        else:
            assert config is not None
            cfg, dest = config, Path(out) if out is not None else default_out(config.task)

            def opener() -> CoreRun:
                if check:
                    check_provider(cfg)
                return CoreRun.create(cfg, dest, transport=transport, embed=embed, mode=mode)

        self._init(opener)

    @classmethod
    def _opened_by(cls, opener: Callable[[], CoreRun]) -> Run:
        """A run whose directory ``opener`` makes (e.g. a balance run, from its prepared data)."""
        self = cls.__new__(cls)
        self._init(opener)
        return self

    def _init(self, opener: Callable[[], CoreRun]) -> None:
        self._opener = opener
        self._run: CoreRun | None = None
        self._task: asyncio.Task[ev.RunFinished] | None = None
        self._queue: asyncio.Queue[ev.Event | None] | None = None
        self._listeners: list[EventCallback] = []
        self.finished: ev.RunFinished | None = None

    # ---- opening and closing -----------------------------------------------
    async def open(self) -> Run:
        """Create or resume the run directory (in a thread: it touches the disk and may load data)."""
        if self._run is None:
            self._run = await asyncio.to_thread(self._opener)
        return self

    async def __aenter__(self) -> Run:
        return await self.open()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None and not self._task.done():
            self.stop()  # leaving early (an exception, a break): stop gracefully, everything made is saved
            try:
                await self._task
            except Exception:  # noqa: BLE001 - the exception that made us leave matters more
                pass
        if self._run is not None and self._task is None:  # never started (a run that ran closed itself)
            self._run.close()

    @property
    def handle(self) -> CoreRun:
        if self._run is None:
            raise RuntimeError("the run is not open: use `async with treesynth.Run(...) as run` or `await run.open()`")
        return self._run

    @property
    def run_dir(self) -> Path:
        return self.handle.root

    @property
    def config(self) -> RunConfig:
        return self.handle.cfg

    # ---- running -------------------------------------------------------------
    def subscribe(self, callback: EventCallback) -> None:
        """Call ``callback`` with every event (on the run's loop), besides ``events()``."""
        self._listeners.append(callback)

    def start(self) -> asyncio.Task[ev.RunFinished]:
        """Start the run on the current loop (``events()`` and ``wait()`` start it too)."""
        if self._task is None:
            run = self.handle

            def emit(e: ev.Event) -> None:
                for listen in self._listeners:
                    listen(e)
                if self._queue is not None:
                    self._queue.put_nowait(e)  # unbounded: no event is ever dropped

            async def execute() -> ev.RunFinished:
                try:
                    fin = await run.execute(emit)
                    self.finished = fin
                    return fin
                finally:
                    if self._queue is not None:
                        self._queue.put_nowait(None)

            self._task = asyncio.ensure_future(execute())
        return self._task

    async def events(self) -> AsyncIterator[ev.Event]:
        """Every event of the run as it happens (the same typed, immutable events the TUI gets), ending with
        ``RunFinished``. Starts the run if it has not started."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        task = self.start()
        while True:
            e = await self._queue.get()
            if e is None:
                break
            yield e
        await task  # its exception, if it failed

    async def wait(self) -> Dataset:
        """Run to the end (or await the run already started) and return its dataset."""
        await self.start()
        return self.dataset

    @property
    def dataset(self) -> Dataset:
        return Dataset(self.handle.root)

    def summary_rows(self) -> list[tuple[str, str]]:
        """The closing summary (as the CLI prints it) once the run has finished."""
        if self.finished is None:
            return []
        return self.handle.summary_rows(self.finished)

    # ---- the live run's controls ----------------------------------------------
    def _steering(self) -> Steerable:
        s = self.handle.steering
        if s is None:
            raise SteeringError("the run is not going on: start it first (events(), wait() or start())")
        return s

    def stop(self) -> None:
        """Graceful stop: no new calls; the calls in flight finish and are saved (resumable)."""
        if self._run is not None:
            self._run.request_stop()

    def pause(self) -> None:
        self._steering().pause()

    def unpause(self) -> None:
        self._steering().resume()

    @property
    def paused(self) -> bool:
        s = self.handle.steering
        return bool(s is not None and s.paused)

    def prune(self, node_id: str) -> None:
        self._steering().prune(node_id)

    def add_value(self, node_id: str, value: str) -> str:
        return self._steering().add_value(node_id, value)

    def rename_value(self, child_id: str, new_value: str) -> None:
        self._steering().rename_value(child_id, new_value)

    def remove_value(self, child_id: str) -> None:
        self._steering().remove_value(child_id)

    def reexpand(self, node_id: str) -> None:
        self._steering().reexpand(node_id)


def _finish(run: Run, progress: bool) -> Dataset:
    """Run ``run`` to its end, blocking, with a progress bar unless ``progress`` is False."""
    bar: ProgressBar | None = None

    async def go() -> Dataset:
        nonlocal bar
        async with run:
            if progress:
                bar = ProgressBar()
                run.subscribe(bar)
            return await run.wait()

    try:
        ds = run_blocking(go, on_interrupt=run.stop)
    finally:
        if bar is not None:
            bar.close()
    if not ds.complete:
        warnings.warn(
            f"the run ended {ds.status}: {ds.run_dir} holds what was made; carry it on with treesynth.resume({str(ds.run_dir)!r})",
            RuntimeWarning, stacklevel=3,
        )
    return ds


def generate(
    task: str | None = None, *, size: int | None = None, model: str | None = None, preset: str | None = None,
    depth: int | None = None, fields: Sequence[str] | None = None, out: PathLike | None = None, judge: bool | None = None,
    baseline: bool = False, api_base: str | None = None, budget: float | None = None, seed: int | None = None,
    tree_model: str | None = None, tree_from: PathLike | None = None,
    config: RunConfig | None = None, config_file: PathLike | None = None, progress: bool = True, check: bool = True,
    transport: Transport | None = None, **options: Any,
) -> Dataset:
    """Grow a tree for ``task`` and synthesise exactly ``size`` rows; returns the ``Dataset``. Blocks until
    done; works in a script and in a notebook. ``tree_model``: the model that grows the tree (``model``
    writes the rows; ``tree_api_base=`` its endpoint); ``tree_from``: reuse a tree (a run directory, its
    tree.json, a taxonomy file). ``options`` are any other run setting (``treesynth.config``),
    e.g. ``concurrency=32``, ``dedup_threshold=0.92``, ``small_model=True``. ``baseline=True`` also makes the
    plain-sampling baseline (``RUN_DIR/baseline``) once the run completes. Raises ``treesynth.errors``
    exceptions on bad settings or an unusable provider (before any call is made)."""
    if config is None:
        config = _make_config(
            task, preset=preset, config_file=config_file, size=size, model=model, depth=depth,
            fields=list(fields) if fields is not None else None, judge=judge, api_base=api_base, budget=budget, seed=seed,
            **{k: v for k, v in (("tree_model", tree_model), ("tree_from", tree_from)) if v is not None}, **options,
        )
    elif task is not None or options or tree_model is not None or tree_from is not None:
        raise ConfigError("give either config=... or the task and its options, not both")
    ds = _finish(Run(config, out, transport=transport, check=check), progress)
    if baseline and ds.complete:
        make_baseline(ds.run_dir, progress=progress, check=check)
    return ds


def resume(run_dir: PathLike, *, progress: bool = True, check: bool = True, transport: Transport | None = None, **overrides: Any) -> Dataset:
    """Carry an interrupted run on (any mode); ``overrides`` may change what a resume can (model, api_base,
    concurrency, budget, judge, ...)."""
    return _finish(Run(resume=run_dir, overrides=overrides, transport=transport, check=check), progress)


def extend(
    run_dir: PathLike, *, size: int, progress: bool = True, check: bool = True, transport: Transport | None = None, **overrides: Any,
) -> Dataset:
    """Grow a finished (or interrupted) run to ``size`` rows in all, on the same tree and in the same directory:
    the rows it has are kept, its quotas are split again for the new total and the new rows pass its quality
    gates. Interrupted, it is carried on by ``extend`` again with the same size (or ``resume``); a size not
    larger than the run's is refused (``treesynth.errors.ConfigError``)."""
    from treesynth.core.extend import record_extension

    record_extension(Path(run_dir), size)
    return _finish(Run(resume=run_dir, overrides=overrides, transport=transport, check=check), progress)


def make_baseline(run_dir: PathLike, *, progress: bool = True, check: bool = True, **overrides: Any) -> Dataset:
    """The run's plain-sampling baseline (no tree, the same model and row count) in ``RUN_DIR/baseline``:
    made, or carried on when it was interrupted."""
    from treesynth.core.baseline import prepare_baseline

    plan = prepare_baseline(Path(run_dir), overrides)
    if plan.config is None:
        return _finish(Run(resume=plan.out, overrides=plan.overrides, check=check), progress)
    return _finish(Run(plan.config, plan.out, check=check), progress)


def balance(
    data: PathLike, *, task: str | None = None, size: int | None = None, target_per_leaf: int | None = None,
    route: str = "embed", route_batch: int = 25, field: str | None = None, fields: Sequence[str] | None = None,
    embedder: str | None = None, out: PathLike | None = None, config_file: PathLike | None = None, progress: bool = True,
    transport: Transport | None = None, embed: Embed | None = None, **options: Any,
) -> Dataset:
    """Rebalance an existing dataset (JSONL, Parquet or CSV) with its own tree: crowded leaves keep their most
    distinct rows, sparse ones get new rows; returns the balanced ``Dataset`` (``balanced.jsonl``). Without
    ``task`` it is inferred from the rows (one call). ``options`` are run settings (model, depth, ...)."""
    from treesynth.core.balance import create_balance_run, prepare_balance
    from treesynth.core.files import ensure_new_run_dir

    flags = {k: v for k, v in {**options, "task": task}.items() if v is not None}
    conf = Path(config_file) if config_file is not None else None
    setup = run_blocking(lambda: prepare_balance(
        Path(data), flags, field=field, fields=tuple(fields) if fields is not None else None, route=route, route_batch=route_batch,
        target_per_leaf=target_per_leaf, size=size, embedder=embedder, config_file=conf, transport=transport,
    ))
    dest = Path(out) if out is not None else default_out(Path(data).stem, prefix="balance-")
    ensure_new_run_dir(dest)

    def factory() -> CoreRun:
        return create_balance_run(setup.data, setup.spec, setup.flags, dest, transport=transport, embed=embed, config_file=conf)

    return _finish(Run._opened_by(factory), progress)


def open_run(run_dir: PathLike) -> Dataset:
    """A run directory, read-only (no lock, nothing changed): its rows, tree and metrics."""
    return Dataset(run_dir)


def report(
    source: PathLike | Dataset, *, compare: Sequence[PathLike | Dataset] = (), out: PathLike | None = None,
    quiet: bool = True, **options: Any,
) -> Path:
    """The HTML report (diversity metrics, leaf coverage, maps) of a run or dataset file, compared with
    ``compare``; writes ``report.html`` and ``metrics.json`` (a run's go into its directory) and returns the
    HTML path. ``options`` as ``treesynth report``'s (``sample``, ``embed_sample``, ``precision``, ...)."""
    from treesynth.analytics.report import build_report

    def path(x: PathLike | Dataset) -> str:
        return str(x.run_dir) if isinstance(x, Dataset) else os.fspath(x)

    first = path(source)
    if out is None and Path(first).is_dir():
        from treesynth.core.rundir import REPORT

        out = Path(first) / REPORT
    dest = Path(out) if out is not None else None
    result = build_report([first, *(path(c) for c in compare)], out=dest, log=None if quiet else print, **options)
    return Path(result.html_path)
