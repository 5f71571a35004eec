"""A transport's life: built for a config (``make_transport``: a pool of Ray workers, or the in-process
transport of core/llm/select.py, as core/transport_choice.py decides), closed when done (``close_transport``).

A transport may hold two kinds of resources (see ``Transport`` in core/llm/types.py): some live on
the event loop it was called on and close with ``await aclose()`` (the http transport's session),
others close synchronously with ``close()`` (a Ray worker pool; the http transport's connections, without
waiting for them). Callers never probe for either: on an event loop they call ``close_transport``;
code that cannot await (a synchronous ``close()`` of a run that may never have run) calls
``close_transport_sync``. Both are idempotent and never raise: closing never fails a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..transport_choice import transport_kind
from .select import make_local_transport

if TYPE_CHECKING:
    from ..config import RunConfig
    from .types import Transport


def make_transport(cfg: RunConfig) -> Transport:
    """The transport for ``cfg``: a pool of Ray workers for ``--executor ray`` (each building
    ``make_local_transport`` on its own node), else ``make_local_transport`` in this process."""
    if transport_kind(cfg) == "ray":
        from .transports.ray import RayTransport

        return RayTransport(cfg)
    return make_local_transport(cfg)


async def close_transport(transport: Transport) -> None:
    """Close everything ``transport`` holds: first ``await transport.aclose()`` where it has one (what
    lives on the running loop closes gracefully), then ``transport.close()`` where it has one. Safe to
    call again and on a transport that holds nothing; never raises."""
    aclose: Any = getattr(transport, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing never fails a run
            pass
    close_transport_sync(transport)


def close_transport_sync(transport: Transport) -> None:
    """``close_transport`` for code that cannot await: calls ``transport.close()`` where it has one,
    which releases everything a transport holds without the loop (a Ray worker pool; the http
    transport's connections, closed without waiting for them). Idempotent; never raises."""
    close: Any = getattr(transport, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing never fails a run
            pass
