"""treesynth.cli: the command line, the only place that composes the layers.

``treesynth`` (``treesynth.cli.main:main``) parses arguments and runs commands over ``treesynth.core``;
it opens the terminal UI (``treesynth.tui``, through ``cli/tui.py``, also ``treesynth-tui``) and builds
reports (``treesynth.analytics``) when asked. Nothing below this package imports it. Heavy imports
happen inside the commands, so ``--help`` is instant.
"""
