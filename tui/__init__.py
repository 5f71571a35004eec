"""treesynth.tui: the Textual front end (``treesynth-tui``, and ``treesynth run`` without ``--no-ui``).

A front end over ``treesynth.core``'s ``Run`` and its event stream: it starts, resumes or browses
runs and steers them through the engine's own APIs. No synthesis logic lives here.
"""
