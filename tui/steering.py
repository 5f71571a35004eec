"""Steering a live run from the run screen: prune a subtree, add, rename or remove a value, re-expand a node.

Each key asks first (a confirm or a prompt dialog), then calls the engine's own steering API; what
the engine changes comes back as events, like everything else. The engine refuses what it cannot do
(``SteeringError``): the refusal is shown, nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from treesynth.core.errors import SteeringError

from .dialogs import ConfirmScreen, PromptScreen
from .model import RunModel, ViewNode

if TYPE_CHECKING:
    from textual.app import App

    from treesynth.core.handle import Steerable

    from .widgets import LogPane

NOT_LIVE = "Steering works while the run is going on."


class SteeringHost(Protocol):
    """What steering needs from the run screen."""

    model: RunModel

    @property
    def app(self) -> App: ...

    @property
    def live(self) -> bool: ...

    @property
    def engine(self) -> Steerable | None: ...

    @property
    def log_pane(self) -> LogPane: ...

    def selected_id(self) -> str | None: ...

    def refuse(self, why: str) -> None: ...

    def notify(self, message: str, *, title: str = ..., severity: Any = ..., timeout: float | None = ...) -> None: ...

    def events_waiting(self) -> None: ...


def path_text(model: RunModel, vn: ViewNode) -> str:
    """``dim = value > dim = value`` from the root to ``vn``."""
    return " > ".join(f"{p.dimension} = {p.value}" for p in model.path(vn.id)) or "(root)"


class SteeringKeys:
    """The steering keys of one run screen."""

    def __init__(self, host: SteeringHost) -> None:
        self.host = host

    def prune(self) -> None:
        vn = self._target(need_parent=True)
        if vn is None:
            return
        self._confirm("Prune this subtree?", f"{path_text(self.host.model, vn)}\n\nIt gets no samples; its quota goes to the other leaves.",
                      "Prune", lambda eng: eng.prune(vn.id))

    def add_value(self) -> None:
        vn = self._target()
        if vn is None:
            return
        model = self.host.model
        # on a leaf or an unexpanded node, add a sibling: a value of the parent's dimension
        node = vn if vn.children else (model.get(vn.parent) if vn.parent else vn)
        dim = node.split_dimension or "(not split yet)"

        async def answer(value: str | None) -> None:
            if value and await self._steer(lambda eng: eng.add_value(node.id, value)):
                self.host.log_pane.add([("steer", f"added {dim} = {value} under node {node.id}")])

        self.host.app.push_screen(
            PromptScreen(f"Add a value to {dim!r}", f"Node {node.id}: {path_text(model, node)}", placeholder="new attribute value"),
            answer,
        )

    def rename_value(self) -> None:
        vn = self._target(need_parent=True)
        if vn is None:
            return

        async def answer(value: str | None) -> None:
            if value and value != vn.value:
                old = vn.value
                if await self._steer(lambda eng: eng.rename_value(vn.id, value)):
                    self.host.log_pane.add([("steer", f"renamed {vn.dimension} = {old} to {value}")])

        self.host.app.push_screen(
            PromptScreen(f"Rename a value of {vn.dimension!r}", f"Node {vn.id}: {path_text(self.host.model, vn)}", value=vn.value or ""),
            answer,
        )

    def remove_value(self) -> None:
        vn = self._target(need_parent=True)
        if vn is None:
            return
        self._confirm(f"Remove the value {vn.value!r}?", f"{path_text(self.host.model, vn)}\n\nIts quota is re-split over its siblings.",
                      "Remove", lambda eng: eng.remove_value(vn.id))

    def reexpand(self) -> None:
        vn = self._target()
        if vn is None:
            return
        self._confirm("Re-expand this node?",
                      f"{path_text(self.host.model, vn)}\n\nIts children are dropped and it is split again with fresh calls.",
                      "Re-expand", lambda eng: eng.reexpand(vn.id))

    # ------------------------------------------------------------------ helpers
    def _target(self, need_parent: bool = False) -> ViewNode | None:
        """The selected node, if steering can act on it now (else the reason is shown and None returned)."""
        host = self.host
        nid = host.selected_id()
        vn = host.model.get(nid) if nid else None
        if vn is None:
            host.refuse("Select a node first.")
            return None
        if need_parent and vn.parent is None:
            host.refuse("The root has no value: select one of its children.")
            return None
        if not host.live:
            host.refuse(NOT_LIVE)
            return None
        return vn

    def _confirm(self, title: str, body: str, yes: str, call: Callable[[Steerable], object]) -> None:
        async def answer(ok: bool | None) -> None:
            if ok:
                await self._steer(call)

        self.host.app.push_screen(ConfirmScreen(title, body, yes=yes), answer)

    async def _steer(self, call: Callable[[Steerable], object]) -> bool:
        """Make one steering call on the live engine; False (and the reason shown) if it was refused."""
        host = self.host
        engine = host.engine
        if not host.live or engine is None:
            host.refuse(NOT_LIVE)
            return False
        try:
            call(engine)
        except SteeringError as e:
            host.notify(str(e), title="Not allowed", severity="error", timeout=6)
            host.log_pane.add([("error", f"refused: {e}")])
            return False
        host.events_waiting()
        return True
