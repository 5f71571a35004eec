"""treesynth.cli: the command line, the only place that composes the layers.

``treesynth`` (``main``) parses arguments and runs commands over ``treesynth.core``; it opens the
terminal UI (``treesynth.tui``) and builds reports (``treesynth.analytics``) when asked. Nothing
below this package imports it. Heavy imports happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from .main import main as _main

    return _main(argv)


def tui_main(argv: list[str] | None = None) -> int:
    """``treesynth-tui [RUN_DIR]``."""
    from .tui import main as _main

    return _main(argv)
