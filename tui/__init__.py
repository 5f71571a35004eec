"""treesynth.tui: the Textual front end (see the TUI issue; not built yet)."""
