"""Engine events -> Textual messages.

The engine calls the bridge synchronously on the app's event loop (it runs as an async
worker there). Usage totals are cumulative, so they travel as ``UsageUpdated`` messages
that coalesce (``can_replace``): only the newest one is handled. Tree and log events are
never dropped: they wait in the bridge's queue in order, and one ``EngineEvents`` message
(itself coalescing) tells the screen to apply them, in time-bounded batches.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from textual.message import Message
from textual.message_pump import MessagePump

from treesynth.core import events as ev


class UsageUpdated(Message, bubble=False):  # for the run screen only
    """The newest usage totals; a newer one replaces an older one still in the queue."""

    def __init__(self, usage: ev.Usage) -> None:
        super().__init__()
        self.usage = usage

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, UsageUpdated)


class EngineEvents(Message, bubble=False):
    """Events are waiting in the bridge's queue (one pending signal stands for any number)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineEvents)


class EventBridge:
    """The engine's ``on_event`` callback for one screen."""

    def __init__(self, target: MessagePump, clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.clock = clock
        self.queue: deque[tuple[ev.Event, float]] = deque()
        self.signalled = False
        self.received = 0
        self.last_usage: ev.Usage | None = None

    def __call__(self, e: ev.Event) -> None:
        self.received += 1
        if isinstance(e, ev.Usage):
            self.last_usage = e
            self.target.post_message(UsageUpdated(e))
            return
        self.queue.append((e, self.clock()))
        if not self.signalled:
            self.signalled = True
            self.target.post_message(EngineEvents())

    def take(self) -> tuple[ev.Event, float] | None:
        try:
            return self.queue.popleft()
        except IndexError:
            return None
