"""What the TUI runs or opens (its four sources), and the services it uses (injectable for tests).

The services that touch the network or import something slow are called from a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treesynth.core.config import RunConfig

if TYPE_CHECKING:
    from treesynth.core.balance import BalanceSpec, Data


def _default_preflight(cfg) -> None:
    from treesynth.core.preflight import check_provider

    check_provider(cfg)


def _default_price(model: str, prices=None):
    from treesynth.core.llm.pricing import call_price

    return call_price(model, prices)  # the config's prices, else litellm's read as data: litellm itself is not imported


@dataclass
class Services:
    """The outside world, as the app sees it. Tests replace the transport and the preflight."""

    transport_factory: Callable[[], Any] | None = None  # None: the product's litellm transport
    preflight: Callable[[RunConfig], None] | None = _default_preflight
    # (model, the config's prices) -> its price function, or None
    price: Callable[[str, Any], Callable[[int, int], float | None] | None] = _default_price
    clock: Callable[[], float] = time.monotonic
    runs_root: Path = field(default_factory=lambda: Path("runs"))
    auto_expand_depth: int = 2
    loop_share_s: float = 0.005  # the engine yields the loop to the UI after this long (see fairness.py)
    embedder: Callable[[list[str]], Any] | None = None  # balance runs: None is the product's embedder
    report_when_done: bool = False  # `treesynth run --report`: build the analytics report when the run completes

    def transport(self):
        return self.transport_factory() if self.transport_factory is not None else None


@dataclass(frozen=True)
class NewRun:
    cfg: RunConfig
    out: Path


@dataclass(frozen=True)
class ResumeRun:
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BrowseRun:
    run_dir: Path


@dataclass(frozen=True)
class NewBalance:
    """``treesynth balance DATA`` (without --no-ui): the data is loaded and the settings checked by the CLI."""

    data: Data
    spec: BalanceSpec | Mapping[str, Any]
    flags: dict[str, Any]
    out: Path
    config_file: str | None = None


Source = NewRun | ResumeRun | BrowseRun | NewBalance
