"""treesynth.core: the TreeSynth engine as a library, shared by every front end.

It grows the tree and fills its leaves (``engine/``), rebalances datasets (``balance/``), talks to
models (``llm``), stores resumable runs (``store``, ``rundir``, ``reader``) and embeds text
(``embeddings``). It imports no front end (``treesynth.tui``, ``treesynth.analytics``,
``treesynth.cli``) and no rendering library (textual, rich, plotly): the import-linter contracts in
pyproject.toml and ``tests/test_architecture.py`` enforce it.
"""

__version__ = "0.1.0"
