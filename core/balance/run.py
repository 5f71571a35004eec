"""``BalanceRun``: a balance run bound to its directory (a run's layout plus routes, plan and outputs).
It is a ``Run`` in ``BalanceMode`` and holds the same handle protocol (core/handle.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import events as ev
from ..config import RunConfig, build_config
from ..embeddings import load_embedder
from ..engine import Engine, Run
from ..errors import RunDirError
from ..files import atomic_write, check_run_dir
from ..handle import RunKind
from ..llm import LLMClient
from ..rundir import BALANCE, BALANCE_SUMMARY
from ..store import Recovered, RunStore
from .data import Data, load_data
from .mode import BalanceMode
from .plan import NEAR_DUP_COSINE
from .spec import BalanceSpec

Embed = Callable[[list[str]], Any]


class BalanceRun:
    kind: RunKind = "balance"

    def __init__(self, run: Run, data: Data, spec: BalanceSpec) -> None:
        self.run = run
        self.data = data
        self.spec = spec

    @staticmethod
    def _mode(data: Data, spec: BalanceSpec, embed: Embed) -> Callable[[Run], BalanceMode]:
        return lambda run: BalanceMode(run.cfg, run.store, run.prompts, data, spec, embed)

    @classmethod
    def create(
        cls, data: Data, spec: BalanceSpec | Mapping[str, Any], flags: dict[str, Any], out: Path, transport: Any = None,
        embed: Embed | None = None, config_file: str | Path | None = None,
    ) -> BalanceRun:
        spec = BalanceSpec.parse(spec, data)
        # new rows may not nearly repeat a real row or each other (semantic dedup, on unless turned off)
        cfg = build_config(
            base={"dedup_threshold": NEAR_DUP_COSINE}, flags={**flags, "fields": ",".join(data.fields), "size": len(data)},
            config_file=config_file,
        )
        embed = embed or load_embedder(spec.embedder)
        run = Run.create(cfg, out, transport=transport, embed=embed, mode=cls._mode(data, spec, embed))
        try:
            atomic_write(run.store.p(BALANCE), spec.to_json())
            return cls(run, data, spec)
        except BaseException:
            run.close()
            raise

    @classmethod
    def resume(cls, run_dir: Path, overrides: dict[str, Any] | None = None, transport: Any = None, embed: Embed | None = None) -> BalanceRun:
        check_run_dir(Path(run_dir))  # a missing directory is missing, not "not a balance run"
        spec = BalanceSpec.read(Path(run_dir))
        data = load_data(spec.data, spec.field, spec.fields)
        if data.digest != spec.digest:
            raise RunDirError(f"{spec.data!r} changed since this balance run began; start a new run")
        embed = embed or load_embedder(spec.embedder)
        run = Run.resume(Path(run_dir), overrides=overrides, transport=transport, embed=embed, mode=cls._mode(data, spec, embed))
        return cls(run, data, spec)

    # the handle protocol (core/handle.py), through the run
    @property
    def cfg(self) -> RunConfig:
        return self.run.cfg

    @property
    def store(self) -> RunStore:
        return self.run.store

    @property
    def client(self) -> LLMClient:
        return self.run.client

    @property
    def recovered(self) -> Recovered:
        return self.run.recovered

    @property
    def engine(self) -> Engine | None:
        return self.run.engine

    @property
    def root(self) -> Path:
        return self.run.root

    @property
    def finished(self) -> bool:
        return self.run.finished

    async def execute(self, on_event: Callable[[ev.Event], None] | None = None) -> ev.RunFinished:
        return await self.run.execute(on_event)

    def request_stop(self) -> None:
        self.run.request_stop()

    def summary(self) -> dict[str, Any] | None:
        p = self.store.p(BALANCE_SUMMARY)
        return json.loads(p.read_text()) if p.exists() else None

    def quality(self) -> ev.Quality | None:
        return self.run.quality()

    def close(self) -> None:
        self.run.close()
