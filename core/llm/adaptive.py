"""How many calls to keep in flight at an endpoint that may answer fewer at once than asked.

A single-slot server (llama-cpp-python's, a local Ollama) decodes one call at a time and queues the
rest: with 16 calls in flight and a 120 s timeout, a call whose turn comes after two minutes times out,
is sent again, and the server still decodes the abandoned one. ``AdaptiveLimit`` is the client's rule:

- a timeout while other calls were in flight (the endpoint was queueing them) halves the limit to half
  the calls that were in flight (never below 1); a timeout of a call alone changes nothing (the
  endpoint is slow, not crowded);
- a run of successes, as many as the limit, each answered within a third of the timeout, raises the
  limit by one, up to the configured concurrency (latency, not the absence of timeouts, decides: a
  queueing endpoint stops the climb long before a call times out again).

Pure state, no I/O: the client asks it and applies its answers.
"""

from __future__ import annotations


class AdaptiveLimit:
    def __init__(self, max_limit: int, timeout_s: float) -> None:
        if max_limit < 1 or timeout_s <= 0:
            raise ValueError("max_limit must be >= 1 and timeout_s > 0")
        self.max_limit = max_limit
        self.limit = max_limit
        self.timeout_s = timeout_s
        self._streak = 0

    def on_timeout(self, in_flight: int) -> int | None:
        """A call timed out with ``in_flight`` calls out (itself included): the new limit, or None."""
        self._streak = 0
        if in_flight < 2:
            return None
        new = max(1, min(self.limit, in_flight) // 2)
        if new >= self.limit:
            return None
        self.limit = new
        return new

    def on_success(self, latency_s: float) -> int | None:
        """A call was answered after ``latency_s``: the new limit, or None."""
        if self.limit >= self.max_limit:
            return None
        if latency_s >= self.timeout_s / 3:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < self.limit:
            return None
        self._streak = 0
        self.limit += 1
        return self.limit
