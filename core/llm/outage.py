"""An endpoint's outages: paused and probed, not failed.

A server restart (an OOM kill and a supervisor's restart, a model reload, a rolling deploy) makes
every call fail at once with "connection refused" or a gateway's 502/503/504. Spending each call's
retries on that ends the run the moment its retries run out, usually while the server is still
coming back. Instead, the first call that finds the endpoint unreachable becomes the *prober*: it
tries again with capped exponential backoff (``probe_delay``) while every other call waits, holding
no concurrency slot. The first answer of any kind (a completion, or an error the server itself
sent) ends the outage and releases the waiting calls. Only when the endpoint has been unreachable
for ``timeout_s`` (``--outage-timeout``) does the run stop, cleanly and resumably
(``EndpointUnreachable``); no node or leaf fails because of an outage.

``Outage`` holds one endpoint's state for one client (one event loop); the timing rules are plain
functions (``probe_delay``, ``expired``) with unit tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import EndpointUnreachable, StopRequested

PROBE_BASE_S = 0.5  # the prober's first wait (the client's backoff base); doubled per failed probe
PROBE_CAP_S = 30.0  # the longest wait between probes
DEFAULT_OUTAGE_TIMEOUT_S = 600.0


def probe_delay(tries: int, base_s: float = PROBE_BASE_S, cap_s: float = PROBE_CAP_S) -> float:
    """Seconds the prober waits after its ``tries``-th failed attempt (1, 2, 4, ... capped)."""
    return float(min(cap_s, base_s * (2 ** max(0, tries - 1))))


def expired(since: float, now: float, timeout_s: float) -> bool:
    """Whether an outage that began at ``since`` has outlasted ``timeout_s`` at ``now``."""
    return now - since >= timeout_s


@dataclass(frozen=True)
class OutageView:
    """What a display shows: how long the endpoint has been unreachable, when the next probe goes."""

    since_s: float
    next_try_s: float | None
    last_error: str


class Outage:
    """One endpoint's reachability, shared by the calls of one client (see the module docstring)."""

    def __init__(
        self, timeout_s: float = DEFAULT_OUTAGE_TIMEOUT_S, *, clock: Callable[[], float] = time.monotonic,
        base_s: float = PROBE_BASE_S, cap_s: float = PROBE_CAP_S,
    ) -> None:
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self.base_s = base_s
        self.cap_s = cap_s
        self.since: float | None = None  # clock() when the endpoint was first found unreachable
        self.next_try_at: float | None = None
        self.last_error = ""
        self.outages = 0  # how many began (for the run's log)
        self._tries = 0
        self._prober: object | None = None
        self._up: asyncio.Event | None = None  # made on first use (on the client's loop)

    @property
    def active(self) -> bool:
        return self.since is not None

    def view(self) -> OutageView | None:
        if self.since is None:
            return None
        now = self.clock()
        nxt = None if self.next_try_at is None else max(0.0, self.next_try_at - now)
        return OutageView(now - self.since, nxt, self.last_error)

    def _event(self) -> asyncio.Event:
        if self._up is None:
            self._up = asyncio.Event()
            self._up.set()
        return self._up

    def failed(self, who: object, error: str) -> float | None:
        """``who``'s call found the endpoint unreachable. Returns the seconds ``who`` waits before it
        probes again when it is (or becomes) the prober; None when another call probes (``who`` waits
        in ``wait`` until the endpoint answers). Raises ``EndpointUnreachable`` past the timeout."""
        now = self.clock()
        if self.since is None:
            self.since = now
            self.outages += 1
            self._tries = 0
            self._event().clear()
        self.last_error = error
        if expired(self.since, now, self.timeout_s):
            raise EndpointUnreachable(self.message(now))
        if self._prober is None or self._prober is who:
            self._prober = who
            self._tries += 1
            delay = min(probe_delay(self._tries, self.base_s, self.cap_s), max(0.0, self.since + self.timeout_s - now))
            self.next_try_at = now + delay
            return delay
        return None

    def answered(self) -> float | None:
        """The endpoint answered (a completion, or an error the server sent): the outage, if any, is
        over. Returns how long it lasted."""
        if self.since is None:
            return None
        lasted = self.clock() - self.since
        self.since = self.next_try_at = None
        self._prober = None
        self._tries = 0
        self._event().set()
        return lasted

    def release(self, who: object) -> None:
        """``who`` leaves without an answer (cancelled, stopped): another waiting call takes over probing."""
        if self._prober is who:
            self._prober = None

    async def wait(self, who: object, stopping: Callable[[], bool]) -> None:
        """Before a call starts: returns at once unless an outage is on and ``who`` is not its prober;
        then waits until the endpoint answers (or takes over probing when the prober left). Raises
        ``StopRequested`` when the run stops and ``EndpointUnreachable`` past the timeout."""
        up = self._event()
        while self.since is not None and self._prober is not who:
            if stopping():
                raise StopRequested()
            now = self.clock()
            if expired(self.since, now, self.timeout_s):
                raise EndpointUnreachable(self.message(now))
            if self._prober is None:  # the prober was cancelled: this call probes from now on
                self._prober = who
                return
            try:
                await asyncio.wait_for(up.wait(), timeout=min(1.0, max(0.05, self.since + self.timeout_s - now)))
            except asyncio.TimeoutError:
                pass

    def message(self, now: float | None = None) -> str:
        lasted = (self.clock() if now is None else now) - (self.since or 0.0)
        why = f" (last error: {self.last_error})" if self.last_error else ""
        return (
            f"the endpoint was unreachable for {lasted:.0f} s, longer than --outage-timeout {self.timeout_s:g} s{why}; "
            "the run stopped and resumes where it left off"
        )
