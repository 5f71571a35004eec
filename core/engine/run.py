"""``Run``: a run bound to its directory, the handle front ends use (``core/handle.py``).

``await Run.create(cfg, out).execute(on_event)`` makes a run; ``Run.resume(run_dir)`` carries one on.
A mode factory makes it something other than plain generation (``BalanceRun`` in core/balance)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import events as ev
from ..cache import ResponseCache
from ..config import RESUMABLE_OVERRIDES, RunConfig, build_config
from ..errors import ConfigError, RunDirError, StorageError
from ..handle import RunKind
from ..llm import LLMClient, UsageTotals, close_transport, close_transport_sync, make_transport
from ..prompts import Prompts
from ..quality.setup import build_gates
from ..rundir import CACHE
from ..store import Recovered, RunStore
from ..tree import Tree
from .engine import Engine, is_storage_error
from .mode import Embed, GenerationMode, Mode

ModeFactory = Callable[["Run"], Mode]


def storage_error(root: Path, e: BaseException) -> StorageError:
    """One line for a failed write: what failed, and that the run can be resumed once it is fixed."""
    if isinstance(e, OSError):
        what = e.strerror or str(e)
        if e.filename:
            what += f": {Path(str(e.filename)).name}"
    else:
        what = f"response cache: {' '.join(str(e).split())[:200]}"
    return StorageError(
        f"cannot write to run directory {str(root)!r} ({what}); everything up to the last finished call is saved;"
        f" fix the cause (free disk space, permissions) and resume with: treesynth run --resume {root}"
    )


class Run:
    """A run bound to its directory: ``await Run.create(...).execute(on_event)``."""

    kind: RunKind = "run"

    def __init__(
        self, cfg: RunConfig, store: RunStore, recovered: Recovered, transport: Any = None, resumed: bool = False,
        embed: Embed | None = None, mode: ModeFactory | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.recovered = recovered
        self.resumed = resumed
        try:
            cache = ResponseCache(Path(cfg.cache_path) if cfg.cache_path else store.p(CACHE))
        except Exception:
            store.close()
            raise
        if transport is None:
            try:
                transport = make_transport(cfg)
            except BaseException:
                cache.close()
                store.close()
                raise
        usage = UsageTotals.from_dict(recovered.state.get("usage") or {})
        self.batch: Any = None  # the BatchTransport of a --batch run (core/llm/batch)
        if cfg.batch:
            from ..llm.batch.setup import BATCH_IN_FLIGHT

            # calls wait in batches, not on connections: every leaf may have all its calls out at once
            cfg = self.cfg = cfg.model_copy(update={"concurrency": max(cfg.concurrency, BATCH_IN_FLIGHT)})
        concurrency = cfg.concurrency
        if cfg.batch:
            from ..llm.batch.setup import batch_transport

            try:
                transport = self.batch = batch_transport(cfg, transport, store.root, usage)
            except BaseException:
                close_transport_sync(transport)
                cache.close()
                store.close()
                raise
        self.client = LLMClient(
            transport, concurrency=concurrency, rpm=cfg.rpm, tpm=cfg.tpm,
            max_retries=cfg.max_retries, budget=cfg.budget, cache=cache, read_cache=cfg.cache, usage=usage,
            # an endpoint that queues calls gets fewer at once (a batch run's calls wait in batches, not in flight)
            adapt_timeout_s=None if cfg.batch else cfg.timeout,
        )
        self.prompts = Prompts(cfg)
        if embed is None:
            from ..lazy_embed import LazyEmbedder

            embed = LazyEmbedder()  # loaded on first use: a data-driven split, semantic dedup
        self.embed: Embed = embed
        if mode is None:
            self.mode: Mode = GenerationMode(cfg, store, embed)
        else:
            self.mode = mode(self)
        judge_make = make_transport
        if self.batch is not None:  # a --judge-model's calls go in its own provider's batches too
            from ..llm.batch.setup import judge_transport_maker

            judge_make = judge_transport_maker(self.batch, make_transport, store.root, usage)
        try:
            self.gates = build_gates(
                cfg, store, self.client, self.prompts, embed, judge_make, self.mode.dedup_text, self.mode.dedup_seed
            )
        except BaseException:
            self.close()
            raise
        self._engine: Engine | None = None

    @classmethod
    def create(cls, cfg: RunConfig, out: Path, transport: Any = None, embed: Embed | None = None, mode: ModeFactory | None = None) -> Run:
        store = RunStore.create(out, cfg.redacted())
        try:
            recovered = Recovered(Tree.new(cfg.size), 0, {}, set(), 0, store.read_state(), [])
            return cls(cfg, store, recovered, transport, embed=embed, mode=mode)
        except BaseException:
            store.close()
            raise

    @classmethod
    def resume(
        cls, run_dir: Path, overrides: dict[str, Any] | None = None, transport: Any = None, embed: Embed | None = None,
        mode: ModeFactory | None = None,
    ) -> Run:
        store = RunStore.open(run_dir)
        try:
            store.check_writable()
            saved = store.read_config()
            overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
            bad = sorted(k for k, v in overrides.items() if k not in RESUMABLE_OVERRIDES and saved.get(k) != v)
            if bad:
                raise ConfigError(f"cannot change {', '.join(bad)} when resuming (allowed: {', '.join(sorted(RESUMABLE_OVERRIDES))})")
            saved.pop("preset", None)  # the preset's values are already resolved into the saved config
            try:
                cfg = build_config(base=saved, flags=overrides)
            except ConfigError as e:
                raise RunDirError(f"{str(run_dir)!r} is corrupt: its config.json is invalid ({e})") from None
            try:
                recovered = store.recover(cfg.size, judge=cfg.judge)
            except OSError as e:  # e.g. a file made read-only: its torn tail cannot be cut
                raise storage_error(store.root, e) from None
            return cls(cfg, store, recovered, transport, resumed=True, embed=embed, mode=mode)
        except BaseException:
            store.close()
            raise

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def root(self) -> Path:
        return Path(self.store.root)

    @property
    def finished(self) -> bool:
        return self.recovered.state.get("status") == "complete"

    async def execute(self, on_event: Callable[[ev.Event], None] | None = None) -> ev.RunFinished:
        self._engine = Engine(
            self.cfg, self.store, self.client, self.prompts, self.recovered, self.mode, on_event, self.resumed, gates=self.gates,
            batch_status=(lambda: self.batch.status) if self.batch is not None else None,
        )
        try:
            return await self._engine.run()
        except Exception as e:
            if is_storage_error(e):
                raise storage_error(self.store.root, e) from None
            raise
        finally:
            try:
                await close_transport(self.client.transport)  # e.g. the http transport's connection pool
                judge = self.gates.judge
                if judge is not None and judge.client is not self.client:
                    await close_transport(judge.client.transport)
            finally:
                self.close()

    def request_stop(self) -> None:
        if self._engine is not None:
            self._engine.request_stop()

    def quality(self) -> ev.Quality | None:
        """What the quality gates did so far (cumulative, resumes included); None when the run has none."""
        return self.gates.counts.event() if self.gates.active else None

    def summary(self) -> dict[str, Any] | None:
        """A mode's own closing figures (a balance run's before/after); a plain run has none."""
        return None

    def close(self) -> None:
        gates = getattr(self, "gates", None)  # absent when building them failed
        if gates is not None:
            gates.close()
            if gates.judge is not None and gates.judge.client is not self.client:
                close_transport_sync(gates.judge.client.transport)
        self.mode.close()
        if self.client.cache is not None:
            try:
                self.client.cache.close()
            except Exception:  # noqa: BLE001
                pass
            self.client.cache = None
        close_transport_sync(self.client.transport)  # e.g. the Ray executor's worker pool, the http transport's connections
        self.store.close()
