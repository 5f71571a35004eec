"""Which of the run screen's keys apply in each of its states: shown (True), greyed out because they
will apply later (None), or hidden (False). Pure: the screen passes what it knows.

The states: preparing | running | paused | stopping | complete | stopped | budget | incomplete |
error | browsing (a run opened read-only).
"""

from __future__ import annotations

from collections.abc import Callable

LIVE_STATES = ("running", "paused", "stopping")  # the engine is going (stopping: finishing the calls in flight)
LIVE_ONLY = ("cancel", "prune", "add_value", "rename_value", "remove_value", "reexpand")
RESUMABLE = ("stopped", "budget", "incomplete", "error", "browsing")


def key_state(action: str, state: str, *, live: bool, paused: bool, has_run_dir: bool, finished: bool,
              browsed_complete: Callable[[], bool]) -> bool | None:
    """``action`` (a binding's action name) in ``state``. ``live``: the engine is going; ``paused``: it is
    paused; ``finished``: the run ended with a summary; ``browsed_complete``: whether the browsed run
    is complete (read from disk, so asked only when it matters)."""
    if action in ("pause", "unpause"):  # p pauses a going run, resumes a paused one
        if state == "stopping":
            return None if action == "pause" else False
        return live and paused == (action == "unpause")
    if action in LIVE_ONLY:
        if state == "stopping":
            return None
        return live
    if action == "resume_run":
        if live:  # u resumes a paused run too
            return paused
        return has_run_dir and state in RESUMABLE and not (state == "browsing" and browsed_complete())
    if action == "report":
        if state in LIVE_STATES or state == "preparing":
            return False
        return True if has_run_dir else None
    if action == "summary":
        return finished
    if action == "extend":  # a finished run only: completed here, or browsed complete
        if state == "complete":
            return has_run_dir
        return state == "browsing" and browsed_complete()
    return True
