"""treesynth.core: the TreeSynth engine, shared by every front end.

Nothing in this package imports a front end (Textual, rich rendering at import
time, plotly); ``tests/test_architecture.py`` enforces it.
"""

__version__ = "0.1.0"
