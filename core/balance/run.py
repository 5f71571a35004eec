"""A balance run is a ``Run`` (core/run.py) in ``BalanceMode``: ``create_balance_run`` makes one (the
spec written beside the run's config), after ``prepare_balance`` has loaded and checked what it needs;
``Run.resume`` carries it on like any run (the mode reads its spec and data again)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..config import build_config
from ..engine.mode import Embed
from ..files import atomic_write
from ..lazy_embed import LazyEmbedder
from ..llm import Transport
from ..run import Run
from ..rundir import BALANCE
from .data import Data
from .mode import BalanceMode
from .plan import NEAR_DUP_COSINE
from .spec import BalanceSpec


def create_balance_run(
    data: Data, spec: BalanceSpec | Mapping[str, Any], flags: dict[str, Any], out: Path, transport: Transport | None = None,
    embed: Embed | None = None, config_file: str | Path | None = None,
) -> Run:
    """A new balance run of ``data`` into ``out`` (run options in ``flags``, as ``build_config`` takes them)."""
    spec = BalanceSpec.parse(spec, data)
    # new rows may not nearly repeat a real row or each other (semantic dedup, on unless turned off)
    cfg = build_config(
        base={"dedup_threshold": NEAR_DUP_COSINE},
        flags={**flags, "fields": ",".join(data.fields), "size": len(data), "mode": BalanceMode.kind},
        config_file=config_file,
    )
    embed = embed or LazyEmbedder(spec.embedder)
    run = Run.create(cfg, out, transport=transport, embed=embed, mode=partial(BalanceMode, data=data, spec=spec))
    try:
        atomic_write(run.store.p(BALANCE), spec.to_json())
        return run
    except BaseException:
        run.close()
        raise


@dataclass(frozen=True)
class BalanceSetup:
    """What a new balance run is made from, checked: the data, the spec, the run options (task included)."""

    data: Data
    spec: BalanceSpec
    flags: dict[str, Any]
    #: the task as inferred from the rows, when none was given (None: given)
    inferred_task: str | None = None
    #: the inferred task is the generic fallback (the model gave nothing usable)
    task_is_fallback: bool = False


async def prepare_balance(
    data_path: str | Path, flags: dict[str, Any], *, field: str | None = None, fields: tuple[str, ...] | None = None,
    route: str = "embed", route_batch: int = 25, target_per_leaf: int | None = None, size: int | None = None,
    embedder: str | None = None, config_file: str | Path | None = None, transport: Transport | None = None,
) -> BalanceSetup:
    """Load the data, check the settings and the provider, and infer the task from the rows when ``flags``
    has none (one LLM call): everything ``treesynth balance`` and ``treesynth.balance`` do before the run."""
    from ..preflight import check_provider
    from .data import load_data
    from .task import fallback_task, infer_task

    flags = {k: v for k, v in flags.items() if k != "fields"}
    if embedder is not None:
        from ..embedder_choice import parse_embedder
        from ..errors import ConfigError

        try:
            kind = parse_embedder(embedder).kind
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if kind != "local":
            raise ConfigError("balance routes rows on this machine: its --embedder is a local sentence-transformers model folder (endpoints are for treesynth run)")
    data = load_data(data_path, field, fields)
    probe = build_config(flags={**flags, "task": flags.get("task") or "(inferring)", "fields": ",".join(data.fields)}, config_file=config_file)
    if transport is None:
        check_provider(probe)
    inferred = None
    fallback = False
    if not flags.get("task"):
        inferred = await infer_task(data, {k: v for k, v in flags.items() if k != "task"}, transport=transport, seed=probe.seed)
        fallback = inferred == fallback_task(data)
        flags["task"] = inferred
    spec = BalanceSpec.parse({
        "data": str(Path(data_path).resolve()), "field": data.field, "fields": data.fields, "route": route,
        "route_batch": route_batch, "target_per_leaf": target_per_leaf, "size": size, "embedder": embedder,
    }, data)
    return BalanceSetup(data, spec, flags, inferred, fallback)
