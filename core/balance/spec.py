"""What a balance run was asked to do, as saved in its ``balance.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, RunDirError
from ..rundir import BALANCE
from .data import Data

Route = Literal["llm", "embed"]


@dataclass(frozen=True)
class BalanceSpec:
    data: str  # the dataset's path
    field: str  # its text column (pivots, routing)
    fields: tuple[str, ...]  # the columns a synthesised row has
    route: Route = "embed"
    route_batch: int = 25  # rows per LLM routing call
    target_per_leaf: int | None = None
    size: int | None = None  # rows after balancing (default: as many as the data has)
    embedder: str | None = None  # sentence-transformers model name or local path
    digest: str | None = None  # the data's fingerprint when the run began

    @classmethod
    def parse(cls, given: BalanceSpec | Mapping[str, Any], data: Data) -> BalanceSpec:
        """A checked spec; what ``given`` leaves out comes from ``data``. Bad values: ConfigError."""
        m = asdict(given) if isinstance(given, BalanceSpec) else dict(given)
        if m.get("target_per_leaf") is not None and m.get("size") is not None:
            raise ConfigError("give --target-per-leaf or --size, not both")
        if m.get("target_per_leaf") is None and m.get("size") is None:
            m["size"] = len(data)
        for k in ("target_per_leaf", "size"):
            if m.get(k) is not None and m[k] < 1:
                raise ConfigError(f"--{k.replace('_', '-')} must be at least 1")
        if m.get("route") not in ("llm", "embed"):
            raise ConfigError("--route must be llm or embed")
        unknown = sorted(set(m) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown balance setting(s): {', '.join(unknown)}")
        m.setdefault("data", "")
        m.setdefault("field", data.field)
        m["fields"] = tuple(m.get("fields") or data.fields)
        m["route_batch"] = max(1, int(m.get("route_batch") or 25))
        return replace(cls(**m), digest=data.digest)

    def to_json(self) -> bytes:
        return json.dumps({**asdict(self), "fields": list(self.fields)}, indent=2).encode()

    @classmethod
    def read(cls, run_dir: Path) -> BalanceSpec:
        """The spec saved in a balance run's directory; RunDirError if it is missing or unreadable."""
        p = Path(run_dir) / BALANCE
        if not p.is_file():
            raise RunDirError(f"{str(run_dir)!r} is not a balance run (no {BALANCE}); use treesynth run --resume")
        try:
            m = json.loads(p.read_text())
            return cls(**{**m, "fields": tuple(m["fields"])})
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise RunDirError(f"{str(run_dir)!r} is corrupt: {BALANCE} is unreadable ({e})") from None
