"""``Run``: a run bound to its directory, whatever its mode; the handle every front end holds
(``core/handle.py``). ``Run.create(cfg, out)`` makes a run, ``Run.resume(run_dir)`` carries one on (its
mode found again from its config, core/modes.py), ``await run.execute(on_event)`` runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import events as ev
from .cache import ResponseCache
from .config import RunConfig, build_config, resume_overrides
from .engine import Engine, is_storage_error
from .engine.mode import Embed, Mode, ModeHost
from .errors import ConfigError, RunDirError, StorageError
from .extend import earlier_sizes
from .files import discard_new_run_dir
from .gcpace import run_pace
from .handle import Steerable
from .llm import LLMClient, Transport, UsageTotals, close_transport, close_transport_sync, make_transport
from .llm.budget import reservation_price
from .llm.pricing import call_price
from .modes import mode_class, recorded_mode
from .progress import closing_rows
from .prompts import Prompts
from .quality.embedder import RowEmbedder
from .quality.embedders import make_row_embedder
from .quality.setup import build_gates, role_client
from .resplit import resplit
from .rundir import CACHE
from .store import Recovered, RunStore
from .tree import Tree
from .treesource import load_given_tree, save_given_tree

ModeFactory = Callable[[ModeHost], Mode]


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


def apply_resplit(store: RunStore, recovered: Recovered, size: int) -> None:
    """Re-split an extended run's quotas for its new ``size`` and journal them (the root last: a crash
    before it is journaled leaves the earlier total, and the next resume re-splits again, to the same
    targets). Rows waiting for their verdicts count as held: the judge may pass them."""
    held = {lid: rec.rows for lid, rec in recovered.leaves.items()}
    for lid, rows in recovered.unjudged.items():
        held[lid] = held.get(lid, 0) + len(rows)
    for node in resplit(recovered.tree, held, size):
        store.journal_node(node)
    store.maybe_snapshot(recovered.tree, force=True)


class Run:
    """A run bound to its directory: ``await Run.create(cfg, out).execute(on_event)``. A mode other than
    ``cfg.mode``'s class comes as a factory (e.g. a balance run's mode, holding its data)."""

    def __init__(
        self, cfg: RunConfig, store: RunStore, recovered: Recovered, transport: Transport | None = None, resumed: bool = False,
        embed: Embed | RowEmbedder | None = None, mode: ModeFactory | None = None, tree_transport: Transport | None = None,
    ) -> None:
        """``transport``: what the rows' calls go through (default: ``cfg``'s); ``tree_transport``: the tree's,
        when ``cfg`` gives the tree its own model or endpoint (default: ``cfg.tree_role()``'s)."""
        self.cfg = cfg
        self.store = store
        self.recovered = recovered
        self.resumed = resumed
        try:
            factory: ModeFactory = mode if mode is not None else mode_class(cfg.mode)
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
        if cfg.budget is not None and not usage.cost_known:
            # made without a price, resumed with a budget (and so, the preflight saw to it, with prices): what the
            # calls before cost is partly unknown; the budget counts what is known, and every call from here
            usage.cost_known = True
            recovered.warnings.append(
                f"the run's cost before this resume is partly unknown (a model had no price): the budget counts the known ${usage.cost:.4f} and every call from here"
            )
        self.batch: Any = None  # the BatchTransport of a --batch run (core/llm/batch)
        if cfg.batch:
            from .llm.batch.setup import BATCH_IN_FLIGHT

            # calls wait in batches, not on connections: every leaf may have all its calls out at once
            cfg = self.cfg = cfg.model_copy(update={"concurrency": max(cfg.concurrency, BATCH_IN_FLIGHT)})
        concurrency = cfg.concurrency
        if cfg.batch:
            from .llm.batch.setup import batch_transport

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
            adapt_timeout_s=None if cfg.batch else cfg.timeout, outage_timeout_s=cfg.outage_timeout,
            price=reservation_price(cfg, cfg.model),
        )
        # the tree's steps: the same client, or one for tree_model / tree_api_base (never batched: a node waits on
        # its answer) sharing the cache, usage and budget; its usage is kept apart by role (core/llm/types.py)
        self.tree_client = self.client
        if cfg.has_tree_role:
            tcfg = cfg.tree_role()
            try:
                tt = tree_transport if tree_transport is not None else make_transport(tcfg)
            except BaseException:
                close_transport_sync(self.client.transport)
                cache.close()
                store.close()
                raise
            # interactive even in a --batch run, so its calls hold their most against the budget too
            price = None if cfg.budget is None else call_price(tcfg.model, cfg.prices)
            self.tree_client = role_client(cfg, self.client, tt, price, adapt_timeout_s=cfg.timeout)
        self.prompts = Prompts(cfg)
        self._loop: asyncio.AbstractEventLoop | None = None  # execute's, once it runs
        self.embed: Embed = self._embed_sync
        try:
            # what makes the run's vectors (semantic dedup, a data-driven split): the config's embedder
            # (core/quality/embedders.py; a local model loads on first use), or one a caller gives
            self.row_embedder: RowEmbedder = (
                embed if isinstance(embed, RowEmbedder) else make_row_embedder(cfg, client=self.client, local=embed)
            )
            self.mode: Mode = factory(self)
        except BaseException:
            for c in self.clients:
                close_transport_sync(c.transport)
            cache.close()
            store.close()
            raise
        judge_make = make_transport
        if self.batch is not None:  # a --judge-model's calls go in its own provider's batches too
            from .llm.batch.setup import judge_transport_maker

            judge_make = judge_transport_maker(self.batch, make_transport, store.root, usage)
        try:
            self.gates = build_gates(
                cfg, store, self.client, self.prompts, self.row_embedder, judge_make, self.mode.dedup_text, self.mode.dedup_seed
            )
        except BaseException:
            self.close()
            raise
        self._engine: Engine | None = None

    @classmethod
    def create(
        cls, cfg: RunConfig, out: Path, transport: Transport | None = None, embed: Embed | RowEmbedder | None = None, mode: ModeFactory | None = None,
        tree_transport: Transport | None = None,
    ) -> Run:
        """A new run in ``out`` (which must not exist, or be empty). If the run cannot be set up (a mode that
        refuses its options, a transport that cannot start), nothing is left behind: ``out`` is as it was."""
        if mode is None:
            mode_class(cfg.mode)  # an unknown mode fails before the directory exists
        given = None
        if cfg.tree_from:  # a reused tree is read and checked before the directory exists; the config says where from
            given, _ = load_given_tree(cfg.tree_from, task=cfg.task, fields=cfg.fields, depth=cfg.depth)
            cfg = cfg.model_copy(update={"tree_from": str(Path(cfg.tree_from).expanduser().resolve())})
        existed = Path(out).exists()
        store = RunStore.create(out, cfg.redacted())
        try:
            if given is not None:
                save_given_tree(store.root, str(cfg.tree_from), given)
            recovered = Recovered(Tree.new(cfg.size), 0, {}, set(), 0, store.read_state(), [])
            return cls(cfg, store, recovered, transport, embed=embed, mode=mode, tree_transport=tree_transport)
        except BaseException:
            store.close()
            discard_new_run_dir(Path(out), existed)
            raise

    @classmethod
    def resume(
        cls, run_dir: Path, overrides: dict[str, Any] | None = None, transport: Transport | None = None, embed: Embed | None = None,
        mode: ModeFactory | None = None, tree_transport: Transport | None = None,
    ) -> Run:
        """Carry an interrupted run on. Its mode is the one it was made with (core/modes.py), unless
        ``mode`` gives a factory; ``overrides`` may change only what a resume can (``RESUMABLE_OVERRIDES``)."""
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        store = RunStore.open(run_dir)
        try:
            store.check_writable()
            saved = store.read_config()
            if mode is None:
                mode_cls = mode_class(recorded_mode(store.root))
                mode_cls.check_resume(store.root, overrides)
                embed = mode_cls.embedder_for(store.root, embed)
                mode = mode_cls  # the class builds the mode, reading what it saved in the run directory
            overrides = resume_overrides(saved, overrides)  # one line for a key that defines the run
            saved.pop("preset", None)  # the preset's values are already resolved into the saved config
            try:
                cfg = build_config(base=saved, flags=overrides)
            except ConfigError as e:
                raise RunDirError(f"{str(run_dir)!r} is corrupt: its config.json is invalid ({e})") from None
            try:
                recovered = store.recover(cfg.size, judge=cfg.judge, earlier=earlier_sizes(store.root))
                if recovered.tree.root.target != cfg.size:  # an extended run (core/extend.py): its quotas re-split
                    apply_resplit(store, recovered, cfg.size)
            except OSError as e:  # e.g. a file made read-only: its torn tail cannot be cut
                raise storage_error(store.root, e) from None
            return cls(cfg, store, recovered, transport, resumed=True, embed=embed, mode=mode, tree_transport=tree_transport)
        except BaseException:
            store.close()
            raise

    # ---- the handle (core/handle.py) ---------------------------------------
    @property
    def kind(self) -> str:
        return self.mode.kind

    @property
    def command(self) -> str:
        return self.mode.command

    @property
    def steering(self) -> Steerable | None:
        """The live run's controls (pause, resume, tree edits) while ``execute`` runs, else None."""
        return self._engine

    @property
    def root(self) -> Path:
        return Path(self.store.root)

    @property
    def finished(self) -> bool:
        return self.recovered.state.get("status") == "complete"

    def _embed_sync(self, texts: list[str]) -> Any:
        """The run's embedder as a plain callable, for work in a worker thread (a data-driven split):
        an endpoint's calls go through the run's event loop, its connections and its cache."""
        return self.row_embedder.as_sync(self._loop)(texts)

    async def execute(self, on_event: Callable[[ev.Event], None] | None = None) -> ev.RunFinished:
        self._loop = asyncio.get_running_loop()
        self._engine = Engine(
            self.cfg, self.store, self.client, self.prompts, self.recovered, self.mode, on_event, self.resumed, gates=self.gates,
            batch_status=(lambda: self.batch.status) if self.batch is not None else None, tree_client=self.tree_client,
        )
        try:
            with run_pace():  # fewer garbage collections while rows flow (core/gcpace.py)
                return await self._engine.run()
        except Exception as e:
            if is_storage_error(e):
                raise storage_error(self.store.root, e) from None
            raise
        finally:
            try:
                await self.row_embedder.aclose()
                for c in self.clients:  # e.g. the http transport's connection pool
                    await close_transport(c.transport)
            finally:
                self.close()

    @property
    def clients(self) -> list[LLMClient]:
        """Every client of the run, each once: the rows' first, then the tree's and the judge's own, if any."""
        out = [self.client]
        for c in (getattr(self, "tree_client", None), getattr(getattr(getattr(self, "gates", None), "judge", None), "client", None)):
            if c is not None and all(c is not o for o in out):
                out.append(c)
        return out

    def request_stop(self) -> None:
        if self._engine is not None:
            self._engine.request_stop()

    def quality(self) -> ev.Quality | None:
        """What the quality gates did so far (cumulative, resumes included); None when the run has none."""
        return self.gates.counts.event() if self.gates.active else None

    def summary(self) -> dict[str, Any] | None:
        """The mode's own closing figures (a balance run's before/after); a plain run has none."""
        return self.mode.summary()

    def summary_rows(self, fin: ev.RunFinished) -> list[tuple[str, str]]:
        """The closing summary as (label, text) rows, the mode's own included."""
        return closing_rows(
            fin, self.command, self.quality(), rows_text=self.mode.rows_text(fin.rows, fin.size, fin.leaves, fin.nodes),
            extra=self.mode.summary_rows(),
        )

    def close(self) -> None:
        gates = getattr(self, "gates", None)  # absent when building them failed
        if gates is not None:
            gates.close()
        for c in self.clients[1:]:  # the tree's and the judge's own (the rows' closes last, below)
            close_transport_sync(c.transport)
        mode = getattr(self, "mode", None)
        if mode is not None:
            mode.close()
        row_embedder = getattr(self, "row_embedder", None)
        if row_embedder is not None:
            row_embedder.close()  # before the cache it shares
        if self.client.cache is not None:
            try:
                self.client.cache.close()
            except Exception:  # noqa: BLE001
                pass
            self.client.cache = None
        close_transport_sync(self.client.transport)  # e.g. the Ray executor's worker pool, the http transport's connections
        self.store.close()
